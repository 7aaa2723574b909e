// Command envoy_check checks Envoy objects against Envoy's v3 API, which Istio 1.30 serves: go-control-plane
// 1.37.0 (the pinned Istio 1.30.3 builds against a 1.37.1 pre-release). The checking itself is
// tools/envoy_check_common's; importing a package here registers its message types.
package main

import (
	envoycheck "beetravels.local/envoy_check_common"

	// What the stack's Istio 1.30 EnvoyFilters carry: a listener's network filter (the connection limit) and an HTTP
	// connection manager's HTTP filter (the request limit, whose rate_limits actions come from the route API).
	_ "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/local_ratelimit/v3"
)

func main() { envoycheck.Main() }
