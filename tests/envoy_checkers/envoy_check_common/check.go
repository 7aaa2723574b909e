// Package envoycheck is the shared body of the Envoy API checkers (tools/envoy_check for v3, tools/envoy_check_v2
// for v2): each registers its API's message types by importing their packages, and this code does the checking.
//
// Input on stdin: a JSON array of Envoy objects, each with its "@type" (an Any in JSON form). Each must name a
// registered message, carry none but that message's fields, and satisfy its validation rules (protoc-gen-validate),
// and so must every Any nested in it (a filter's typed_config): protoc-gen-validate does not look inside an Any.
// One line per problem; exit 1 if there is any.
package envoycheck

import (
	"encoding/json"
	"fmt"
	"os"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// The v3 generation has ValidateAll (every violation); v2's older protoc-gen-validate has only Validate (the first).
type validateAll interface{ ValidateAll() error }
type validateFirst interface{ Validate() error }

func validate(message protoreflect.Message) error {
	switch rules := message.Interface().(type) {
	case validateAll:
		return rules.ValidateAll()
	case validateFirst:
		return rules.Validate()
	}
	return nil
}

func unpack(message protoreflect.Message) (protoreflect.Message, error) {
	typed, ok := message.Interface().(*anypb.Any)
	if !ok {
		return message, nil
	}
	inner, err := typed.UnmarshalNew()
	if err != nil {
		return nil, err
	}
	return inner.ProtoReflect(), nil
}

// checkMessage validates one message and walks its set fields for nested messages (through lists and maps).
func checkMessage(message protoreflect.Message) error {
	message, err := unpack(message)
	if err != nil {
		return err
	}
	if err := validate(message); err != nil {
		return fmt.Errorf("%s: %w", message.Descriptor().FullName(), err)
	}
	message.Range(func(field protoreflect.FieldDescriptor, value protoreflect.Value) bool {
		err = checkField(field, value)
		return err == nil
	})
	return err
}

func checkField(field protoreflect.FieldDescriptor, value protoreflect.Value) (err error) {
	switch {
	case field.IsMap() && field.MapValue().Message() != nil:
		value.Map().Range(func(_ protoreflect.MapKey, entry protoreflect.Value) bool {
			err = checkMessage(entry.Message())
			return err == nil
		})
	case field.IsList() && field.Message() != nil:
		for index := 0; index < value.List().Len() && err == nil; index++ {
			err = checkMessage(value.List().Get(index).Message())
		}
	case !field.IsMap() && !field.IsList() && field.Message() != nil:
		err = checkMessage(value.Message())
	}
	return err
}

func check(raw json.RawMessage) error {
	var typed anypb.Any
	if err := protojson.Unmarshal(raw, &typed); err != nil {
		return err
	}
	return checkMessage(typed.ProtoReflect())
}

// Main checks the objects on stdin and exits: 0 all well-formed, 1 a problem (printed), 2 unreadable input.
func Main() {
	var objects []json.RawMessage
	if err := json.NewDecoder(os.Stdin).Decode(&objects); err != nil {
		fmt.Println("input:", err)
		os.Exit(2)
	}
	failed := false
	for index, raw := range objects {
		if err := check(raw); err != nil {
			fmt.Printf("%d: %v\n", index, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}
