-- wrk script: POST /data/{customerId}/{dialogId} with a 76-byte message, 20
-- messages per dialogue, over 1,000 customers. Requests go round 64
-- dialogues at a time, so that (at -c64) a dialogue's messages arrive one
-- after another, as a chatbot sends them, not all at once: only its first
-- message starts it (and looks its owner up in the database). The same
-- request goes to the service and to `data-api-bench bare`.
local counter = 0
request = function()
  local block = math.floor(counter / (64 * 20))
  local dialogue = block * 64 + counter % 64
  counter = counter + 1
  local path = string.format("/data/customer-%d/dlg-%d", dialogue % 1000, dialogue)
  return wrk.format("POST", path,
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer bench-secret-0123456789"},
    '{"text": "Hello, I ordered a blue jacket last week and it still has not arrived. Help?", "language": "en"}')
end
