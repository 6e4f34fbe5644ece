"""The operator interface: REST API, its facade over the gateway, flow counters, live page, OpenAPI, ryu-nat-ctl."""
