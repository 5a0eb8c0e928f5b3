-- Fleet-wide single flight, one round trip: the stored value if there is one, else (or when
-- the caller could not open it) an attempt at the fetch lock.
-- KEYS[1] value, KEYS[2] lock (same hash slot); ARGV[1] last byte index to read (bounds the
-- reply), ARGV[2] lock owner, ARGV[3] lock TTL in ms, ARGV[4] '1' to try the lock even when a
-- value is present.
-- Returns {value or '', 1 when this caller now holds the lock else 0}.
local value = redis.call('GETRANGE', KEYS[1], 0, ARGV[1])
if value ~= '' and ARGV[4] ~= '1' then
  return {value, 0}
end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return {value, 1}
end
return {value, 0}
