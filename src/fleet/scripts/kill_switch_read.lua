-- Reads the kill-switch state of the given profiles, each bounded in size.
-- KEYS[1] the state hash; ARGV[1] largest state in bytes; ARGV[2..] profiles.
-- Returns one string per profile: '' when never changed, '!' when larger than the bound.
local limit = tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV do
  local state = redis.call('HGET', KEYS[1], ARGV[i])
  if not state then
    out[i - 1] = ''
  elseif #state > limit then
    out[i - 1] = '!'
  else
    out[i - 1] = state
  end
end
return out
