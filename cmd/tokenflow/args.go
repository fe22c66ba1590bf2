package main

// Usage errors from cobra and pflag, typed where they arise: the flag error
// function words pflag's typed errors, and every command's argument validator
// returns a usageError. Main maps them to exit status 2.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// flagError is the root's flag error function (cobra's SetFlagErrorFunc):
// it turns pflag's errors into usage errors that say what to do.
func flagError(cmd *cobra.Command, err error) error {
	help := fmt.Sprintf("see '%s --help'", cmd.CommandPath())
	var (
		unknown *pflag.NotExistError
		noValue *pflag.ValueRequiredError
		invalid *pflag.InvalidValueError
	)
	switch {
	case errors.As(err, &unknown) && unknown.GetSpecifiedShortnames() != "":
		return usageErr("unknown flag -%s in -%s: %s", unknown.GetSpecifiedName(), unknown.GetSpecifiedShortnames(), help)
	case errors.As(err, &unknown):
		return usageErr("unknown flag --%s: %s", unknown.GetSpecifiedName(), help)
	case errors.As(err, &noValue):
		return usageErr("--%s needs a value: %s", noValue.GetFlag().Name, help)
	case errors.As(err, &invalid):
		return usageErr("--%s %s", invalid.GetFlag().Name, invalidValue(invalid.GetValue(), invalid))
	}
	return usageErr("%v: %s", err, help)
}

// invalidValue says why a flag's parser refused a value: `"ten": want a
// whole number`. A --config key whose value is refused says the same.
func invalidValue(value string, err error) string {
	var invalid *pflag.InvalidValueError
	if errors.As(err, &invalid) {
		err = invalid.Unwrap()
	}
	reason := err.Error()
	var num *strconv.NumError
	if errors.As(err, &num) {
		switch {
		case errors.Is(num.Err, strconv.ErrRange):
			reason = "out of range"
		case num.Func == "ParseFloat":
			reason = "want a number"
		case num.Func == "ParseUint":
			reason = "want a whole number, 0 or more"
		case num.Func == "ParseBool":
			reason = "want true or false"
		default:
			reason = "want a whole number"
		}
	}
	return fmt.Sprintf("%q: %s", value, reason)
}

// usageArgs makes the argument errors of c and its subcommands usage
// errors: cobra's own validators are wrapped, and a command group refuses an
// unknown command itself (cobra reports that with an untyped error, or shows
// the help and exits 0 for a subgroup).
func usageArgs(c *cobra.Command) {
	switch {
	case c.HasSubCommands() && !c.Runnable():
		c.Args = unknownCommand
		c.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
		c.SuggestionsMinimumDistance = 2
	case c.Args != nil:
		validate := c.Args
		c.Args = func(c *cobra.Command, args []string) error {
			err := validate(c, args)
			if err == nil || errors.Is(err, errUsage) {
				return err
			}
			return usageErr("%v: see '%s --help'", err, c.CommandPath())
		}
	}
	for _, sub := range c.Commands() {
		usageArgs(sub)
	}
}

// unknownCommand is the argument validator of a command group.
func unknownCommand(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	hint := fmt.Sprintf("see '%s --help'", c.CommandPath())
	if s := c.SuggestionsFor(args[0]); len(s) > 0 {
		hint = "did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageErr("unknown command %q for %q: %s", args[0], c.CommandPath(), hint)
}

// editArgs and invertArgs are the argument validators of edit (the input
// may come from --config's data_path) and invert.
var (
	editArgs   = inputArgs("--prompt", false)
	invertArgs = inputArgs("--inversion-prompt", true)
)

// inputArgs validates the one input of a command. Extra arguments that look
// like a prompt (`edit in.mp4 "a red car"`, in either order) are answered
// with the flag they belong to.
func inputArgs(promptFlag string, required bool) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		switch {
		case len(args) == 0 && required:
			return usageErr("no input: give a video file or a folder of frames")
		case len(args) <= 1:
			return nil
		}
		input := slices.IndexFunc(args, looksLikeInput)
		if input < 0 {
			// nothing looks like a file: the first single word is taken for it
			input = slices.IndexFunc(args, oneWord)
		}
		var words []string
		for i, a := range args {
			if i != input && !looksLikeInput(a) {
				words = append(words, a)
			}
		}
		if len(words) == 0 {
			quoted := make([]string, len(args))
			for i, a := range args {
				quoted[i] = strconv.Quote(a)
			}
			return usageErr("too many arguments: %s takes one video or frame folder, got %d (%s)", c.Name(), len(args), strings.Join(quoted, ", "))
		}
		return usageErr("too many arguments: did you mean %s %q?", promptFlag, strings.Join(words, " "))
	}
}

// looksLikeInput reports whether a command-line argument names a file or
// folder rather than words of a prompt: it exists, or it is a single word
// with a path separator or a file extension.
func looksLikeInput(arg string) bool {
	if _, err := os.Stat(arg); err == nil {
		return true
	}
	if arg == "" || !oneWord(arg) {
		return false
	}
	if strings.ContainsRune(arg, filepath.Separator) {
		return true
	}
	ext := strings.TrimPrefix(filepath.Ext(arg), ".")
	asciiAlnum := func(r rune) bool { return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' }
	return len(ext) >= 2 && len(ext) <= 4 && strings.TrimFunc(ext, asciiAlnum) == ""
}

// oneWord reports whether a command-line argument has no blanks.
func oneWord(arg string) bool { return !strings.ContainsAny(arg, " \t\n") }
