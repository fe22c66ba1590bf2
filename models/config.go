package models

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
)

// ErrUnsupported marks a checkpoint whose architecture the builders do not
// implement; the message names the config field.
var ErrUnsupported = errors.New("unsupported architecture")

// IntOrList is a config value given either as one int (for every block) or
// as a per-block list, as diffusers allows.
type IntOrList struct {
	Set  bool
	One  int
	List []int
}

func (v *IntOrList) UnmarshalJSON(b []byte) error {
	*v = IntOrList{}
	if string(bytes.TrimSpace(b)) == "null" {
		return nil
	}
	if json.Unmarshal(b, &v.One) != nil && json.Unmarshal(b, &v.List) != nil {
		return fmt.Errorf("want an int or a list of ints")
	}
	v.Set = true
	return nil
}

// perBlock expands the value to n blocks; a list of another length is an
// error naming the field.
func (v IntOrList) perBlock(path, field string, n int) ([]int, error) {
	if v.List == nil {
		return slices.Repeat([]int{v.One}, n), nil
	}
	if len(v.List) != n {
		return nil, fieldError(path, field, "has %d entries, block_out_channels has %d", len(v.List), n)
	}
	return v.List, nil
}

// blockTypes checks a list of block types: n entries, each one of allowed.
func blockTypes(path, field string, types []string, n int, allowed ...string) error {
	if len(types) != n {
		return fieldError(path, field, "has %d entries, block_out_channels has %d", len(types), n)
	}
	for _, t := range types {
		if !slices.Contains(allowed, t) {
			return unsupported(path, field, "block type %q (supported: %s)", t, strings.Join(allowed, ", "))
		}
	}
	return nil
}

// readConfig parses path into v, with errors naming the file.
func readConfig(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return fmt.Errorf("%s: not a valid config.json: %v", path, err)
	}
	// Decode field by field so that a bad value names its field.
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		one, _ := json.Marshal(map[string]json.RawMessage{k: fields[k]})
		if err := json.Unmarshal(one, v); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				return fieldError(path, k, "want %s, have %s", te.Type, te.Value)
			}
			return fieldError(path, k, "%v", err)
		}
	}
	return nil
}

// fieldError is a validation error naming the file and the field.
func fieldError(path, field, format string, a ...any) error {
	return fmt.Errorf("%s: %s: %s", path, field, fmt.Sprintf(format, a...))
}

func unsupported(path, field, format string, a ...any) error {
	return fmt.Errorf("%w: %s: %s: %s", ErrUnsupported, path, field, fmt.Sprintf(format, a...))
}

func positive(path, field string, v int) error {
	if v <= 0 {
		return fieldError(path, field, "must be positive, have %d", v)
	}
	return nil
}

func allPositive(path, field string, vs []int) error {
	for _, v := range vs {
		if v <= 0 {
			return fieldError(path, field, "entries must be positive, have %v", vs)
		}
	}
	return nil
}
