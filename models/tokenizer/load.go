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
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
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
	if vocab, ok := parseVocabFast(data); ok {
		return vocab, nil
	}
	// Anything the fast path does not take (a syntax error, a non-integer
	// id, an empty object, ...) goes through encoding/json for its message.
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

// parseVocabFast parses the usual vocab.json, one flat JSON object from
// string to non-negative integer, about ten times faster than encoding/json
// into a map. It reports false for anything else, including valid JSON it
// does not handle, and the caller falls back to encoding/json.
func parseVocabFast(data []byte) (map[string]int64, bool) {
	p := jsonScanner{data: data}
	p.space()
	if !p.byte('{') {
		return nil, false
	}
	vocab := make(map[string]int64, bytes.Count(data, []byte(`":`))+1)
	p.space()
	if p.byte('}') {
		return nil, false // empty: let the slow path explain
	}
	for {
		p.space()
		key, ok := p.string()
		if !ok {
			return nil, false
		}
		p.space()
		if !p.byte(':') {
			return nil, false
		}
		p.space()
		id, ok := p.uint()
		if !ok {
			return nil, false
		}
		vocab[key] = id
		p.space()
		if p.byte(',') {
			continue
		}
		if !p.byte('}') {
			return nil, false
		}
		p.space()
		return vocab, p.pos == len(p.data)
	}
}

type jsonScanner struct {
	data []byte
	pos  int
}

func (p *jsonScanner) space() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *jsonScanner) byte(c byte) bool {
	if p.pos < len(p.data) && p.data[p.pos] == c {
		p.pos++
		return true
	}
	return false
}

// string reads a JSON string with the escapes \" \\ \/ \b \f \n \r \t and
// \uXXXX (surrogate pairs joined); it refuses invalid UTF-8 and lone
// surrogates.
func (p *jsonScanner) string() (string, bool) {
	if !p.byte('"') {
		return "", false
	}
	start := p.pos
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		if c == '"' {
			s := p.data[start:p.pos]
			p.pos++
			if !utf8.Valid(s) {
				return "", false
			}
			return string(s), true
		}
		if c == '\\' {
			break // escapes: take the slow loop below
		}
		if c < 0x20 {
			return "", false
		}
		p.pos++
	}
	var b []byte
	b = append(b, p.data[start:p.pos]...)
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			if !utf8.Valid(b) {
				return "", false
			}
			return string(b), true
		case c < 0x20:
			return "", false
		case c != '\\':
			b = append(b, c)
			p.pos++
			continue
		}
		if p.pos+1 >= len(p.data) {
			return "", false
		}
		esc := p.data[p.pos+1]
		p.pos += 2
		switch esc {
		case '"', '\\', '/':
			b = append(b, esc)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", false
			}
			if utf16.IsSurrogate(r) {
				if !p.byte('\\') || !p.byte('u') {
					return "", false
				}
				r2, ok := p.hex4()
				if !ok {
					return "", false
				}
				if r = utf16.DecodeRune(r, r2); r == utf8.RuneError {
					return "", false
				}
			}
			b = utf8.AppendRune(b, r)
		default:
			return "", false
		}
	}
	return "", false
}

func (p *jsonScanner) hex4() (rune, bool) {
	if p.pos+4 > len(p.data) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(p.data[p.pos:p.pos+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	p.pos += 4
	return rune(v), true
}

// uint reads a JSON integer that is 0 or has no leading zero, up to
// math.MaxInt32.
func (p *jsonScanner) uint() (int64, bool) {
	start := p.pos
	var v int64
	for p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
		v = v*10 + int64(p.data[p.pos]-'0')
		if v > math.MaxInt32 {
			return 0, false
		}
		p.pos++
	}
	n := p.pos - start
	if n == 0 || n > 1 && p.data[start] == '0' {
		return 0, false
	}
	if p.pos < len(p.data) && (p.data[p.pos] == '.' || p.data[p.pos] == 'e' || p.data[p.pos] == 'E') {
		return 0, false
	}
	return v, true
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
