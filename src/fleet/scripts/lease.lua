-- Takes or renews the lease on a shared token. KEYS[1] lease; ARGV[1] holder, ARGV[2] TTL ms.
-- Returns 1 when the caller holds the lease for the next ARGV[2] ms, else 0.
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
