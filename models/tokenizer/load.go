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

// specialToken is one special token and the file that named it (for errors).
type specialToken struct {
	field   string // "bos_token", ...
	content string
	source  string // path of the file it came from, "" for the default
}

// tokenizerFiles is what Load reads, before it is turned into a Tokenizer.
type tokenizerFiles struct {
	vocab      map[string]int64
	merges     []mergePair
	bos        specialToken
	eos        specialToken
	unk        specialToken
	pad        specialToken
	additional []specialToken
	maxLength  int
}

type mergePair struct{ a, b string }

// readFiles reads and validates the four tokenizer files of dir.
func readFiles(dir string) (*tokenizerFiles, error) {
	tf := &tokenizerFiles{
		bos:       specialToken{field: "bos_token", content: defaultBOS},
		eos:       specialToken{field: "eos_token", content: defaultEOS},
		unk:       specialToken{field: "unk_token", content: defaultUnk},
		pad:       specialToken{field: "pad_token", content: defaultPad},
		maxLength: defaultMaxLength,
	}
	var err error
	if tf.vocab, err = readVocab(filepath.Join(dir, vocabFile)); err != nil {
		return nil, err
	}
	if tf.merges, err = readMerges(filepath.Join(dir, mergesFile)); err != nil {
		return nil, err
	}
	// transformers' from_pretrained: tokenizer_config.json gives the
	// constructor arguments, then special_tokens_map.json overrides the
	// special tokens it names. Both files are optional.
	if err := tf.readSpecials(filepath.Join(dir, configFile), true); err != nil {
		return nil, err
	}
	if err := tf.readSpecials(filepath.Join(dir, specialTokensFile), false); err != nil {
		return nil, err
	}
	for _, st := range tf.specials() {
		if _, ok := tf.vocab[st.content]; !ok {
			if st.source == "" {
				return nil, fmt.Errorf("%s: the default %s %q (no %s or %s names one) is not in it",
					filepath.Join(dir, vocabFile), st.field, st.content, specialTokensFile, configFile)
			}
			return nil, fmt.Errorf("%s: %s %q is not in %s", st.source, st.field, st.content, vocabFile)
		}
	}
	return tf, nil
}

// specials lists every special token: bos, eos, unk, pad, then the
// additional ones.
func (tf *tokenizerFiles) specials() []specialToken {
	return append([]specialToken{tf.bos, tf.eos, tf.unk, tf.pad}, tf.additional...)
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

// readVocab reads vocab.json: a JSON object from token to id.
func readVocab(path string) (map[string]int64, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	var raw map[string]json.Number
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%s: not valid JSON: %w", path, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: not valid JSON: data after the top-level object", path)
	}
	if raw == nil {
		return nil, fmt.Errorf("%s: want a JSON object from token to id, got null", path)
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("%s: the vocabulary is empty", path)
	}
	vocab := make(map[string]int64, len(raw))
	for tok, num := range raw {
		id, err := num.Int64()
		if err != nil || id < 0 || id > math.MaxInt32 {
			return nil, fmt.Errorf("%s: token %q: id %s is not a non-negative integer", path, tok, num)
		}
		vocab[tok] = id
	}
	return vocab, nil
}

// readMerges reads merges.txt: a first line (normally "#version: 0.2") that
// is skipped, then one merge per line, "left right", in rank order. Like
// CLIPTokenizer, surrounding whitespace of the file is ignored and only the
// first maxMerges merges are used.
func readMerges(path string) ([]mergePair, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	text := strings.TrimSpace(string(data))
	lines := strings.Split(text, "\n")
	if text == "" || len(lines) < 2 {
		return nil, fmt.Errorf("%s: no merges after the first (version) line", path)
	}
	lines = lines[1:]
	if len(lines) > maxMerges {
		lines = lines[:maxMerges]
	}
	merges := make([]mergePair, len(lines))
	for i, line := range lines {
		a, b, n := splitMerge(line)
		if n != 2 {
			return nil, fmt.Errorf("%s:%d: want two space-separated symbols, got %q", path, i+2, strings.TrimSpace(line))
		}
		merges[i] = mergePair{a, b}
	}
	return merges, nil
}

// splitMerge splits a merges.txt line at whitespace, as Python's
// str.split() does, returning the first two fields and the field count.
func splitMerge(line string) (a, b string, n int) {
	var f [2]string
	start := -1
	for i, r := range line {
		if unicode.IsSpace(r) {
			if start >= 0 {
				if n < 2 {
					f[n] = line[start:i]
				}
				n++
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		if n < 2 {
			f[n] = line[start:]
		}
		n++
	}
	return f[0], f[1], n
}

// readSpecials reads the special tokens (and, from tokenizer_config.json,
// model_max_length) of one optional JSON file.
func (tf *tokenizerFiles) readSpecials(path string, isConfig bool) error {
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
	for _, st := range []*specialToken{&tf.bos, &tf.eos, &tf.unk, &tf.pad} {
		msg, ok := raw[st.field]
		if !ok {
			continue
		}
		content, ok, err := parseAddedToken(msg)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", path, st.field, err)
		}
		if ok {
			st.content, st.source = content, path
		}
	}
	if msg, ok := raw["additional_special_tokens"]; ok && !isNull(msg) {
		var list []json.RawMessage
		if err := json.Unmarshal(msg, &list); err != nil {
			return fmt.Errorf("%s: additional_special_tokens: want a list of tokens: %w", path, err)
		}
		tf.additional = tf.additional[:0]
		for i, m := range list {
			field := fmt.Sprintf("additional_special_tokens[%d]", i)
			content, ok, err := parseAddedToken(m)
			if err != nil {
				return fmt.Errorf("%s: %s: %w", path, field, err)
			}
			if ok {
				tf.additional = append(tf.additional, specialToken{field: field, content: content, source: path})
			}
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
		tf.maxLength = int(v)
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
