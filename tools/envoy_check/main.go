// Command envoy_check reads a JSON array of Envoy typed configs (each with its "@type") on stdin and checks each
// against Envoy's own API: the type URL must name a message of the pinned go-control-plane, every field must be
// one of its fields (no unknown keys), and the message's validation rules (protoc-gen-validate) must hold.
// It prints one line per problem and exits 1 if there is any.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	// The filters the stack configures; importing a package registers its message types.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
)

type validator interface{ ValidateAll() error }

func check(raw json.RawMessage) error {
	var typed anypb.Any
	if err := protojson.Unmarshal(raw, &typed); err != nil {
		return err
	}
	message, err := typed.UnmarshalNew()
	if err != nil {
		return err
	}
	if rules, ok := message.(validator); ok {
		return rules.ValidateAll()
	}
	return nil
}

func main() {
	var configs []json.RawMessage
	if err := json.NewDecoder(os.Stdin).Decode(&configs); err != nil {
		fmt.Println("input:", err)
		os.Exit(2)
	}
	failed := false
	for index, raw := range configs {
		if err := check(raw); err != nil {
			fmt.Printf("%d: %v\n", index, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}
