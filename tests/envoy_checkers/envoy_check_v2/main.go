// Command envoy_check_v2 checks Envoy objects against Envoy's v2 API, which Istio 1.6 serves (its Envoy is 1.14):
// go-control-plane v0.9.9, the last release carrying the v2 packages (Istio 1.6.14 pins a v0.9.5 pre-release, which
// the Go module proxy here does not serve; the v2 protos were frozen by then, so the messages are the same).
// The checking itself is tools/envoy_check_common's.
package main

import (
	envoycheck "beetravels.local/envoy_check_common"

	// What the stack's Istio 1.6 EnvoyFilters carry: a listener's network filter, holding the connection limit.
	_ "github.com/envoyproxy/go-control-plane/envoy/api/v2/listener"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/filter/network/local_rate_limit/v2alpha"
)

func main() { envoycheck.Main() }
