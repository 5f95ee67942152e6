package hub

import "github.com/redis/rueidis"

// The Lua scripts of the Redis bridge. Each touches the keys of one room (one cluster slot),
// or the nodes set alone.
//
// A room's epoch is made by the script that finds the room without one, from Redis' clock
// (seconds.microseconds): new whenever the room's keys are, and no work for the hosts.
//
// The scripts that publish take the command as an argument: PUBLISH, or SPUBLISH on a Redis
// Cluster (publishVerb).

// redisNow starts the scripts that read Redis' clock: it defines the locals t (TIME's
// answer) and now (the same in ms), which the scripts after it use.
const redisNow = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// publishScript orders a batch of a room's messages, in the order given: each its room's next
// seq, appended to the room's stream (trimmed to about the history size), and all of them
// published on the room's channel in one payload, atomically. It is what a message costs in
// Redis, so it does as little as it can, and the calls not made per message (the clock, the
// epoch, the seq, the TTL, the publish) are made once a batch. Each message object is built
// around its seq from the head and tail that the sender encoded.
//
// A message whose deadline (Redis' clock, ms) has passed is not sent: its sender has stopped
// waiting by then and told its client that the message was not sent, which must stay true.
// The script answers the last seq when it sent every message; else each message's seq, or
// -1 for one it did not send, in order. (An integer costs Redis less to answer than a table.)
//
// KEYS: meta, log, channel. ARGV: history, ttl ms, publish command, then four for each
// message: head, tail, user, deadline ms.
var publishScript = rueidis.NewLuaScript(redisNow + `
local late = 0
for i = 7, #ARGV, 4 do
  if now > tonumber(ARGV[i]) then
    late = late + 1
  end
end
local live = (#ARGV - 3) / 4 - late
local out
if late > 0 then
  out = {}
end
if live == 0 then
  for i = 7, #ARGV, 4 do
    out[#out + 1] = -1
  end
  return out
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = t[1] .. '.' .. t[2]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0)
end
local last = redis.call('HINCRBY', KEYS[1], 'seq', live)
local seq = last - live
local payload
local entries = {}
for i = 4, #ARGV, 4 do
  if late > 0 and now > tonumber(ARGV[i + 3]) then
    out[#out + 1] = -1
  else
    seq = seq + 1
    if late > 0 then
      out[#out + 1] = seq
    end
    local obj = ARGV[i] .. seq .. ARGV[i + 1]
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], seq .. '-0', 'm', obj, 'u', ARGV[i + 2])
    if live == 1 then
      payload = 'M ' .. epoch .. ' ' .. seq .. ' ' .. ARGV[i + 2] .. '\n' .. obj
    else
      entries[#entries + 1] = seq .. ' ' .. ARGV[i + 2] .. '\n' .. obj
    end
  end
end
if live > 1 then
  payload = 'B ' .. epoch .. ' ' .. live .. '\n' .. table.concat(entries, '\n')
end
-- A TTL when the keys are new; the hosts with members in the room refresh it on their
-- heartbeat, so a message need not (two fewer calls a message).
if redis.call('PTTL', KEYS[2]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
redis.call(ARGV[3], KEYS[3], payload)
if late > 0 then
  return out
end
return last
`)

// stateScript reads a room's epoch (creating it for a new room), newest seq, and the stored
// messages after seq ARGV[1] (the newest ARGV[2] when ARGV[1] is 0), oldest first.
//
// KEYS: meta, log. ARGV: after, count, ttl ms.
var stateScript = rueidis.NewLuaScript(`
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  local t = redis.call('TIME')
  epoch = t[1] .. '.' .. t[2]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local entries
if tonumber(ARGV[1]) == 0 then
  entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[2])
  local n = #entries
  for i = 1, math.floor(n / 2) do
    entries[i], entries[n - i + 1] = entries[n - i + 1], entries[i]
  end
else
  entries = redis.call('XRANGE', KEYS[2], (tonumber(ARGV[1]) + 1) .. '-0', '+', 'COUNT', ARGV[2])
end
return {epoch, seq, entries}
`)

// claimScript claims a user name in a room for a node, and gives the room an epoch if it
// has none. A name held by a node in the dead list is free: its host died. (A node missing
// from both lists is alive: it may have started after this host's last heartbeat.) It answers
// {code, name, node, name, node, ...} with every holder of a name in the room; code is 0 when
// the name is taken, 1 when it was claimed now, 2 when the node held it already. A name
// claimed now is announced on the room's channel with ARGV[6], in the same step, so that no
// failure between the two can leave other hosts without the join. Past the deadline (Redis'
// clock, ms) it does nothing and answers {-1}, as publishScript does.
//
// KEYS: users, meta, log, channel. ARGV: user, node, ttl ms, deadline ms, publish command,
// the join's payload, dead nodes...
var claimScript = rueidis.NewLuaScript(redisNow + `
if now > tonumber(ARGV[4]) then
  return {-1}
end
if redis.call('HSETNX', KEYS[2], 'epoch', t[1] .. '.' .. t[2]) == 1 then
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[2], 'seq', 0)
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
local code = 1
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur == ARGV[2] then
  code = 2
elseif cur then
  local dead = false
  for i = 7, #ARGV do
    if ARGV[i] == cur then
      dead = true
    end
  end
  if not dead then
    return {0}
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if code == 1 then
  redis.call(ARGV[5], KEYS[4], ARGV[6])
end
local out = {code}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all do
  out[#out + 1] = all[i]
end
return out
`)

// releaseSource gives a user name back if node holds it, and then announces the leave with
// ARGV[4] in the same step; it answers 1 when it did.
//
// KEYS: users, channel. ARGV: user, node, publish command, the leave's payload.
const releaseSource = `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call(ARGV[3], KEYS[2], ARGV[4])
  return 1
end
return 0
`

// releaseScript runs releaseSource for one name (a leave): EVALSHA, the script loaded once.
var releaseScript = rueidis.NewLuaScript(releaseSource)

// releaseBatchScript runs releaseSource for many names in one pipeline (a prune) as EVAL:
// EVALSHA's ExecMulti first loads the script on every node of a cluster, and one node that
// does not answer fails every release of the batch, the other nodes' rooms too.
var releaseBatchScript = rueidis.NewLuaScriptNoSha(releaseSource)

// rosterScript publishes a room's roster, every name held in it (an R payload), on its
// channel, read in the same step so that it comes in order with the room's presence, and
// answers how many names it holds.
//
// KEYS: users, channel. ARGV: publish command.
var rosterScript = rueidis.NewLuaScriptNoSha(`
local names = redis.call('HKEYS', KEYS[1])
redis.call(ARGV[1], KEYS[2], 'R ' .. #names .. '\n' .. table.concat(names, '\n'))
return #names
`)

// heartbeatScript keeps a node alive until now (Redis' clock) plus ARGV[2] ms, and answers
// whether the node's time had run out before (1: missing, retired by another host, or marked
// dead after a failed prune; a new node too), the live nodes, the nodes whose time ran out,
// and Redis' clock (ms).
//
// KEYS: nodes. ARGV: node, ttl ms.
var heartbeatScript = rueidis.NewLuaScript(redisNow + `
local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
local expired = 0
if not old or tonumber(old) < now then
  expired = 1
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return {expired, redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf'), redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now), now}
`)

// retireScript removes a node from the live set if its time has run out, and answers 1 when
// it did. A node that heartbeat since it was seen dead stays. The caller holds the node's
// pruning marker: of the hosts that see a node dead, the one that set it retires and prunes.
//
// KEYS: nodes. ARGV: node.
var retireScript = rueidis.NewLuaScript(redisNow + `
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) < now then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
`)
