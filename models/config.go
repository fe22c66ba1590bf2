package models

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
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
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		*v = IntOrList{}
		return nil
	}
	if len(b) > 0 && b[0] == '[' {
		var l []int
		if err := json.Unmarshal(b, &l); err != nil {
			return fmt.Errorf("want an int or a list of ints")
		}
		*v = IntOrList{Set: true, List: l}
		return nil
	}
	var n int
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("want an int or a list of ints")
	}
	*v = IntOrList{Set: true, One: n}
	return nil
}

// PerBlock expands the value to n blocks; ok is false when a list has
// another length.
func (v IntOrList) PerBlock(n int) ([]int, bool) {
	if v.List != nil {
		return v.List, len(v.List) == n
	}
	return slices.Repeat([]int{v.One}, n), true
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
