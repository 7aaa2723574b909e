module beetravels.local/envoy_check_v2

go 1.24.0

require (
	beetravels.local/envoy_check_common v0.0.0
	github.com/envoyproxy/go-control-plane v0.9.9
)

require (
	github.com/cncf/xds/go v0.0.0-20210312221358-fbca930ec8ed // indirect
	github.com/envoyproxy/protoc-gen-validate v0.1.0 // indirect
	github.com/golang/protobuf v1.5.4 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

replace beetravels.local/envoy_check_common => ../envoy_check_common
