package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The files of a diffusers checkpoint's tokenizer/ folder.
const (
	vocabFile         = "vocab.json"
	mergesFile        = "merges.txt"
	specialTokensFile = "special_tokens_map.json"
	configFile        = "tokenizer_config.json"
)

// maxMerges is how many merges.txt lines CLIPTokenizer reads after the
// "#version" line: transformers slices them as [1 : 49152-256-2+1], i.e. a
// 49152-entry vocabulary minus the 256 byte symbols minus the two special
// tokens. Lines past it are ignored there and here.
const maxMerges = 49152 - 256 - 2

// CLIPTokenizer's constructor defaults, used for whatever neither
// special_tokens_map.json nor tokenizer_config.json names.
const (
	defaultBOS       = "<|startoftext|>"
	defaultEOS       = "<|endoftext|>"
	defaultUnk       = "<|endoftext|>"
	defaultPad       = "<|endoftext|>"
	defaultMaxLength = 77 // the CLIP text encoder's position embeddings
	maxMaxLength     = 1 << 16
)

// mergePair is one line of merges.txt: two symbols that BPE may join.
type mergePair struct{ a, b string }

// Load reads the tokenizer of a diffusers checkpoint from dir (its
// tokenizer/ folder): vocab.json and merges.txt, and when present
// special_tokens_map.json and tokenizer_config.json for the bos, eos, unk,
// pad (and additional) special tokens and model_max_length. It is New with
// the files' contents; errors name the file and the field.
func Load(dir string) (*Tokenizer, error) {
	vocab, err := readFile(filepath.Join(dir, vocabFile))
	if err != nil {
		return nil, err
	}
	merges, err := readFile(filepath.Join(dir, mergesFile))
	if err != nil {
		return nil, err
	}
	// transformers' from_pretrained: tokenizer_config.json gives the
	// constructor arguments, then special_tokens_map.json overrides the
	// special tokens it names. Both files are optional.
	var opts Options
	source := map[string]string{} // field -> path of the file that set it
	if err := readOptions(filepath.Join(dir, configFile), true, &opts, source); err != nil {
		return nil, err
	}
	if err := readOptions(filepath.Join(dir, specialTokensFile), false, &opts, source); err != nil {
		return nil, err
	}
	t, err := New(vocab, merges, opts)
	var fe *FileError
	var te *TokenError
	switch {
	case errors.As(err, &fe):
		return nil, &FileError{File: filepath.Join(dir, fe.File), Line: fe.Line, Err: fe.Err}
	case errors.As(err, &te) && source[te.Field] != "":
		return nil, fmt.Errorf("%s: %w", source[te.Field], te)
	case errors.As(err, &te):
		return nil, fmt.Errorf("%s: the default %s %q (no %s or %s names one) is not in it",
			filepath.Join(dir, vocabFile), te.Field, te.Token, specialTokensFile, configFile)
	case err != nil:
		return nil, err
	}
	return t, nil
}

// readFile reads path, reporting a missing file as "<path>: no such file or
// directory" (still matching fs.ErrNotExist).
func readFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, unwrapPath(err))
	}
	return data, nil
}

// parseVocab parses vocab.json: a JSON object from token to id.
func parseVocab(data []byte) (map[string]int64, error) {
	fail := func(format string, a ...any) error {
		return &FileError{File: vocabFile, Err: fmt.Errorf(format, a...)}
	}
	if i := invalidUTF8(data); i >= 0 {
		return nil, fail("not valid UTF-8 (byte %d)", i) // as json.load of a UTF-8 text file
	}
	var raw map[string]json.Number
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, fail("not valid JSON: %w", err)
	}
	if dec.More() {
		return nil, fail("not valid JSON: data after the top-level object")
	}
	if raw == nil {
		return nil, fail("want a JSON object from token to id, got null")
	}
	if len(raw) == 0 {
		return nil, fail("the vocabulary is empty")
	}
	vocab := make(map[string]int64, len(raw))
	for tok, num := range raw {
		id, err := num.Int64()
		if err != nil || id < 0 || id > math.MaxInt32 {
			return nil, fail("token %q: id %s is not a non-negative integer", tok, num)
		}
		vocab[tok] = id
	}
	return vocab, nil
}

// parseMerges parses merges.txt: a first line (normally "#version: 0.2")
// that is skipped, then one merge per line, "left right", in rank order.
// It reads the file as CLIPTokenizer does (UTF-8, universal newlines,
// Python's whitespace stripped from both ends, each line split with
// str.split()) and uses only the first maxMerges merges; a line that is not
// two symbols is an error here, a merge that never applies there. Errors
// give 1-based lines of the file.
func parseMerges(data []byte) ([]mergePair, error) {
	if i := invalidUTF8(data); i >= 0 {
		return nil, &FileError{File: mergesFile, Line: 1 + strings.Count(universalNewlines(string(data[:i])), "\n"),
			Err: errors.New("not valid UTF-8")}
	}
	text := universalNewlines(string(data))
	lead := len(text) - len(strings.TrimLeftFunc(text, isPySpace))
	first := 1 + strings.Count(text[:lead], "\n") // the file's line of the version line
	trimmed := strings.TrimRightFunc(text[lead:], isPySpace)
	lines := strings.Split(trimmed, "\n")
	if trimmed == "" || len(lines) < 2 {
		return nil, &FileError{File: mergesFile, Err: errors.New("no merges after the first (version) line")}
	}
	lines = lines[1:]
	if len(lines) > maxMerges {
		lines = lines[:maxMerges]
	}
	merges := make([]mergePair, len(lines))
	for i, line := range lines {
		f := strings.FieldsFunc(line, isPySpace)
		if len(f) != 2 {
			return nil, &FileError{File: mergesFile, Line: first + 1 + i,
				Err: fmt.Errorf("want two space-separated symbols, got %q", strings.TrimFunc(line, isPySpace))}
		}
		merges[i] = mergePair{f[0], f[1]}
	}
	return merges, nil
}

// universalNewlines turns "\r\n" and "\r" into "\n", as Python's text
// files do when reading.
func universalNewlines(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

// invalidUTF8 returns the offset of the first byte of data that is not
// part of a UTF-8 sequence, or -1.
func invalidUTF8(data []byte) int {
	for i, r := range string(data) {
		if r == utf8.RuneError && !bytes.HasPrefix(data[i:], []byte("\uFFFD")) {
			return i
		}
	}
	return -1
}

// isPySpace is Python's str.isspace for one character: Go's unicode.IsSpace
// plus the information separators U+001C..U+001F.
func isPySpace(r rune) bool {
	return unicode.IsSpace(r) || r >= 0x1C && r <= 0x1F
}

// readOptions reads the special tokens (and, from tokenizer_config.json,
// model_max_length) of one optional JSON file into opts, recording in source
// which file set each field.
func readOptions(path string, isConfig bool, opts *Options, source map[string]string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, unwrapPath(err))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("%s: not valid JSON: %w", path, err)
	}
	for _, f := range []struct {
		field string
		dst   *string
	}{{"bos_token", &opts.BOS}, {"eos_token", &opts.EOS}, {"unk_token", &opts.Unk}, {"pad_token", &opts.Pad}} {
		msg, ok := raw[f.field]
		if !ok {
			continue
		}
		content, ok, err := parseAddedToken(msg)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", path, f.field, err)
		}
		if ok {
			*f.dst, source[f.field] = content, path
		}
	}
	if msg, ok := raw["additional_special_tokens"]; ok && !isNull(msg) {
		var list []json.RawMessage
		if err := json.Unmarshal(msg, &list); err != nil {
			return fmt.Errorf("%s: additional_special_tokens: want a list of tokens: %w", path, err)
		}
		// Entries that name no token stay as "" (which New skips), so that
		// indices match the file's.
		opts.Additional = make([]string, len(list))
		for i, m := range list {
			field := additionalField(i)
			content, _, err := parseAddedToken(m)
			if err != nil {
				return fmt.Errorf("%s: %s: %w", path, field, err)
			}
			opts.Additional[i], source[field] = content, path
		}
	}
	if msg, ok := raw["model_max_length"]; ok && isConfig && !isNull(msg) {
		var v float64
		if err := json.Unmarshal(msg, &v); err != nil {
			return fmt.Errorf("%s: model_max_length: want a number, got %s", path, msg)
		}
		if v != math.Trunc(v) || v < 2 || v > maxMaxLength {
			return fmt.Errorf("%s: model_max_length %s is not a usable sequence length (2..%d)", path, msg, maxMaxLength)
		}
		opts.MaxLength = int(v)
	}
	return nil
}

// parseAddedToken reads a special token written as a string or as an
// AddedToken object {"content": ..., "lstrip": ..., ...}. The flags do not
// change the ids of a CLIP prompt (whitespace around special tokens is
// cleaned away anyway), so only the content is kept. ok is false for null
// and for an empty string (no such token).
func parseAddedToken(msg json.RawMessage) (content string, ok bool, err error) {
	if isNull(msg) {
		return "", false, nil
	}
	if err := json.Unmarshal(msg, &content); err == nil {
		return content, content != "", nil
	}
	var obj struct {
		Content *string `json:"content"`
	}
	if err := json.Unmarshal(msg, &obj); err != nil || obj.Content == nil {
		return "", false, fmt.Errorf(`want a string or {"content": "..."}, got %s`, abbreviate(msg))
	}
	return *obj.Content, *obj.Content != "", nil
}

func isNull(msg json.RawMessage) bool { return string(bytes.TrimSpace(msg)) == "null" }

func abbreviate(msg json.RawMessage) string {
	s := string(bytes.TrimSpace(msg))
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
