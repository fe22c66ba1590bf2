// Package param is the error a library returns when a setting is wrong.
// Libraries name settings by their request names ("steps", "batch_size");
// only the command line knows them as flags (--steps, --batch-size) and
// words the message for its user.
package param

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
)

// Error says that setting Name with value Value cannot be used, and why.
// Reason reads after the value ("must be at least 1"); it names other
// settings in braces ("is more than {inversion_steps} 10"), for Words to
// put in a caller's terms. Err, when set, is the underlying cause, for
// errors.Is and errors.As.
type Error struct {
	Name   string
	Value  string
	Reason string
	Err    error
}

func (e *Error) Error() string { return e.Words(Plain) }

// Words is the message with every setting named by name(setting): the
// command line passes its flag names.
func (e *Error) Words(name func(string) string) string {
	reason := Render(e.Reason, name)
	if e.Value == "" {
		return name(e.Name) + ": " + reason
	}
	return name(e.Name) + " " + e.Value + ": " + reason
}

var braced = regexp.MustCompile(`\{[a-z_]+\}`)

// Render is text with every setting it names in braces ("pass {ort_lib}")
// named by name(setting); Plain names each by itself.
func Render(text string, name func(string) string) string {
	return braced.ReplaceAllStringFunc(text, func(m string) string { return name(m[1 : len(m)-1]) })
}

// Plain names a setting by itself ("ort_lib").
func Plain(setting string) string { return setting }

func (e *Error) Unwrap() error { return e.Err }

// Errorf is an Error for setting name with value v (formatted with %v; an
// empty value shows as "") and a formatted reason. A %w in format wraps its operand as Err.
func Errorf(name string, v any, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &Error{Name: name, Value: cmp.Or(fmt.Sprint(v), `""`), Reason: err.Error(), Err: errors.Unwrap(err)}
}

// Kindf is Errorf with Err set to kind, a sentinel for errors.Is, whose
// text does not join the reason.
func Kindf(kind error, name string, v any, format string, args ...any) error {
	e := Errorf(name, v, format, args...).(*Error)
	e.Err = kind
	return e
}

// Reasonf is an Error about setting name without a value to show.
func Reasonf(name string, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &Error{Name: name, Reason: err.Error(), Err: errors.Unwrap(err)}
}

// AtLeast checks v >= lo for setting name.
func AtLeast(name string, v, lo int) error {
	if v < lo {
		return Errorf(name, v, "must be at least %d", lo)
	}
	return nil
}

// Fraction checks 0 <= v <= 1 for setting name (NaN fails).
func Fraction(name string, v float64) error {
	if !(v >= 0 && v <= 1) {
		return Errorf(name, v, "must be between 0 and 1")
	}
	return nil
}
