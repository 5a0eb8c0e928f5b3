-- Deletes a lock or lease only while the caller still holds it (it may have expired and been
-- taken by another replica meanwhile). KEYS[1] lock; ARGV[1] owner. Returns 1 when deleted.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
