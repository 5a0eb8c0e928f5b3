-- Stores one profile's kill-switch state and tells every replica, atomically.
-- KEYS[1] the state hash; ARGV[1] profile, ARGV[2] state (JSON), ARGV[3] channel.
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1
