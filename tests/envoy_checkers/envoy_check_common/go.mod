module beetravels.local/envoy_check_common

go 1.24.0

require google.golang.org/protobuf v1.36.12
