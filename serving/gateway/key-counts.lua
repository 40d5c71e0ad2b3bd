-- GET :8405/metrics/keys: the per-key counts of the stick table "keys" in Prometheus' text
-- format. HAProxy 2.6's prometheus-exporter reports per frontend, backend and server, and of a
-- stick table only its size and use, not its entries: this lists them, nothing more.
local function label(value)
    return (tostring(value):gsub("\\", "\\\\"):gsub("\n", "\\n"):gsub('"', '\\"'))
end

core.register_service("key_counts", "http", function(applet)
    local model = label(os.getenv("MODEL_NAME") or "")
    local counters = {
        {"http_req_cnt", "workbench_gateway_key_requests_total", "requests with this key"},
        {"http_err_cnt", "workbench_gateway_key_client_errors_total", "4xx answers to this key"},
        {"http_fail_cnt", "workbench_gateway_key_server_errors_total", "5xx answers to this key"},
        {"gpc0", "workbench_gateway_key_refused_total", "requests with this key the gateway refused (429, 413)"},
    }
    local rows = core.backends["keys"].stktable:dump()
    local out = {}
    for _, c in ipairs(counters) do
        out[#out + 1] = "# HELP " .. c[2] .. " " .. c[3]
        out[#out + 1] = "# TYPE " .. c[2] .. " counter"
        for key, data in pairs(rows) do
            out[#out + 1] = string.format('%s{key="%s",model="%s"} %d', c[2], label(key), model, data[c[1]] or 0)
        end
    end
    local body = table.concat(out, "\n") .. "\n"
    applet:set_status(200)
    applet:add_header("content-type", "text/plain; version=0.0.4")
    applet:add_header("content-length", string.len(body))
    applet:start_response()
    applet:send(body)
end)
