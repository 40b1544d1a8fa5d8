-- wrk script: walk /logs/1.json .. /logs/N.json in turn, as `pinflow run --urls
-- 'http://HOST/logs/{1..N}.json'` does, instead of one URL over and over.
--   wrk -t1 -c64 -d10s -s logs.lua http://127.0.0.1:PORT -- N
local n = 200000
local i = 0

function init(args)
  if args[1] then
    n = tonumber(args[1])
  end
end

function request()
  i = i % n + 1
  return wrk.format("GET", "/logs/" .. i .. ".json")
end
