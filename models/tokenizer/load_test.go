package tokenizer

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A tiny tokenizer written by the tests: a handful of symbols and three
// merges whose ranks are not in left-to-right order.
const (
	tinyVocab = `{"<|startoftext|>": 0, "<|endoftext|>": 1, "a": 2, "b": 3, "c": 4,
		"a</w>": 5, "b</w>": 6, "c</w>": 7, "ab": 8, "abc</w>": 9, "bc</w>": 10, "!": 11}`
	tinyMerges = "#version: 0.2\nb c</w>\na b\nab c</w>\n"
)

// writeTokenizer writes a tokenizer/ folder into a temporary directory; a
// file whose content is "" is left out.
func writeTokenizer(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tokenizer")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if content == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// tinyFiles returns the tiny tokenizer's files with the given replacements.
func tinyFiles(replace map[string]string) map[string]string {
	files := map[string]string{vocabFile: tinyVocab, mergesFile: tinyMerges}
	for k, v := range replace {
		files[k] = v
	}
	return files
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string // substring of the error, after the temporary folder
	}{
		{
			name:  "missing vocab.json",
			files: tinyFiles(map[string]string{vocabFile: ""}),
			want:  "tokenizer/vocab.json: no such file or directory",
		},
		{
			name:  "corrupt vocab.json",
			files: tinyFiles(map[string]string{vocabFile: `{"a": 1, "b": `}),
			want:  "tokenizer/vocab.json: not valid JSON: unexpected EOF",
		},
		{
			name:  "vocab.json is a list",
			files: tinyFiles(map[string]string{vocabFile: `["a", "b"]`}),
			want:  "tokenizer/vocab.json: not valid JSON: json: cannot unmarshal array",
		},
		{
			name:  "vocab.json with a fractional id",
			files: tinyFiles(map[string]string{vocabFile: `{"a": 1.5}`}),
			want:  `tokenizer/vocab.json: token "a": id 1.5 is not a non-negative integer`,
		},
		{
			name:  "vocab.json with a negative id",
			files: tinyFiles(map[string]string{vocabFile: `{"a": -1}`}),
			want:  `tokenizer/vocab.json: token "a": id -1 is not a non-negative integer`,
		},
		{
			name:  "empty vocab.json object",
			files: tinyFiles(map[string]string{vocabFile: `{}`}),
			want:  "tokenizer/vocab.json: the vocabulary is empty",
		},
		{
			name:  "missing merges.txt",
			files: tinyFiles(map[string]string{mergesFile: ""}),
			want:  "tokenizer/merges.txt: no such file or directory",
		},
		{
			name:  "merges.txt with a malformed line",
			files: tinyFiles(map[string]string{mergesFile: "#version: 0.2\nb c</w>\na b c\nab c</w>\n"}),
			want:  `tokenizer/merges.txt:3: want two space-separated symbols, got "a b c"`,
		},
		{
			name:  "merges.txt with a lone symbol",
			files: tinyFiles(map[string]string{mergesFile: "#version: 0.2\nb c</w>\nab\n"}),
			want:  `tokenizer/merges.txt:3: want two space-separated symbols, got "ab"`,
		},
		{
			name:  "merges.txt with only the version line",
			files: tinyFiles(map[string]string{mergesFile: "#version: 0.2\n"}),
			want:  "tokenizer/merges.txt: no merges after the first (version) line",
		},
		{
			name:  "pad token not in the vocabulary",
			files: tinyFiles(map[string]string{specialTokensFile: `{"pad_token": "<x>"}`}),
			want:  `tokenizer/special_tokens_map.json: pad_token "<x>" is not in vocab.json`,
		},
		{
			name:  "bos token object not in the vocabulary",
			files: tinyFiles(map[string]string{configFile: `{"bos_token": {"__type": "AddedToken", "content": "<s>"}}`}),
			want:  `tokenizer/tokenizer_config.json: bos_token "<s>" is not in vocab.json`,
		},
		{
			name:  "default special token missing from the vocabulary",
			files: tinyFiles(map[string]string{vocabFile: `{"<|endoftext|>": 0, "a</w>": 1}`}),
			want:  `tokenizer/vocab.json: the default bos_token "<|startoftext|>" (no special_tokens_map.json or tokenizer_config.json names one) is not in it`,
		},
		{
			name:  "special token of the wrong type",
			files: tinyFiles(map[string]string{specialTokensFile: `{"eos_token": 7}`}),
			want:  `tokenizer/special_tokens_map.json: eos_token: want a string or {"content": "..."}, got 7`,
		},
		{
			name:  "special token object without content",
			files: tinyFiles(map[string]string{specialTokensFile: `{"eos_token": {"lstrip": false}}`}),
			want:  `tokenizer/special_tokens_map.json: eos_token: want a string or {"content": "..."}, got {"lstrip": false}`,
		},
		{
			name:  "corrupt special_tokens_map.json",
			files: tinyFiles(map[string]string{specialTokensFile: `{"pad_token": "!",}`}),
			want:  "tokenizer/special_tokens_map.json: not valid JSON: invalid character '}'",
		},
		{
			name:  "unusable model_max_length",
			files: tinyFiles(map[string]string{configFile: `{"model_max_length": 1000000000000000019884624838656}`}),
			want:  "tokenizer/tokenizer_config.json: model_max_length 1000000000000000019884624838656 is not a usable sequence length (2..65536)",
		},
		{
			name:  "model_max_length of the wrong type",
			files: tinyFiles(map[string]string{configFile: `{"model_max_length": "77"}`}),
			want:  `tokenizer/tokenizer_config.json: model_max_length: want a number, got "77"`,
		},
		{
			name:  "additional special token not in the vocabulary",
			files: tinyFiles(map[string]string{specialTokensFile: `{"additional_special_tokens": ["ab", {"content": "<new>"}]}`}),
			want:  `tokenizer/special_tokens_map.json: additional_special_tokens[1] "<new>" is not in vocab.json`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeTokenizer(t, tt.files)
			tok, err := Load(dir)
			if err == nil {
				t.Fatalf("Load succeeded (%+v), want an error containing %q", tok, tt.want)
			}
			got := strings.TrimPrefix(err.Error(), filepath.Dir(dir)+string(filepath.Separator))
			if !strings.Contains(got, tt.want) {
				t.Errorf("error (-want +got):\n-%s\n+%s", tt.want, got)
			}
		})
	}
}

func TestLoadMissingFileIsNotExist(t *testing.T) {
	_, err := Load(writeTokenizer(t, tinyFiles(map[string]string{vocabFile: ""})))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load error %v does not match fs.ErrNotExist", err)
	}
}

func TestLoadSpecialTokens(t *testing.T) {
	type encodeCase struct {
		in        string
		ids       []int64
		truncated bool
	}
	tests := []struct {
		name                          string
		files                         map[string]string
		bos, eos, pad, unk, maxLength int64
		tokenize                      []int64 // Tokenize("abc!ab")
		encode                        []encodeCase
	}{
		{
			name:  "CLIPTokenizer defaults without the optional files",
			files: tinyFiles(nil),
			bos:   0, eos: 1, pad: 1, unk: 1, maxLength: 77,
			// "a bc</w>", "!</w>" is not in the vocabulary (unk), "a b</w>"
			tokenize: []int64{2, 10, 1, 2, 6},
		},
		{
			name: "special_tokens_map.json overrides tokenizer_config.json",
			files: tinyFiles(map[string]string{
				configFile:        `{"pad_token": "<|endoftext|>", "model_max_length": 5, "unk_token": {"__type": "AddedToken", "content": "c"}}`,
				specialTokensFile: `{"pad_token": "!"}`,
			}),
			bos: 0, eos: 1, pad: 11, unk: 4, maxLength: 5,
			// Every special token is split out: unk "c" and pad "!" too.
			tokenize: []int64{2, 6, 4, 11, 2, 6},
			encode: []encodeCase{
				{"c", []int64{0, 4, 1, 11, 11}, false},
				{"abc", []int64{0, 2, 6, 4, 1}, false},
				{"abcab", []int64{0, 2, 6, 4, 1}, true},
			},
		},
		{
			name: "additional special tokens are split out too",
			files: tinyFiles(map[string]string{
				specialTokensFile: `{"additional_special_tokens": [{"content": "ab", "lstrip": true}]}`,
			}),
			bos: 0, eos: 1, pad: 1, unk: 1, maxLength: 77,
			tokenize: []int64{8, 7, 1, 8},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := Load(writeTokenizer(t, tt.files))
			if err != nil {
				t.Fatal(err)
			}
			got := []int64{tok.BOSID(), tok.EOSID(), tok.PadID(), tok.UnkID(), int64(tok.MaxLength())}
			want := []int64{tt.bos, tt.eos, tt.pad, tt.unk, tt.maxLength}
			if d := diff(want, got); d != "" {
				t.Errorf("bos, eos, pad, unk, max length %s", d)
			}
			if d := diff(tt.tokenize, tok.Tokenize("abc!ab")); d != "" {
				t.Errorf("Tokenize(\"abc!ab\") %s", d)
			}
			for _, e := range tt.encode {
				checkEncode(t, tok, e.in, e.ids, e.truncated)
			}
		})
	}
}

// TestBPEMergeOrder checks that merges apply by rank, not position, and
// that every occurrence of the chosen pair merges, left to right.
func TestBPEMergeOrder(t *testing.T) {
	tok, err := Load(writeTokenizer(t, tinyFiles(nil)))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		word    string
		symbols []string
		ids     []int64
	}{
		// "b c</w>" (rank 0) beats "a b" (rank 1); "a bc</w>" is no merge,
		// so "ab c</w>" (rank 2) never gets its chance.
		{"abc", []string{"a", "bc</w>"}, []int64{2, 10}},
		// Every "a b" merges in the same step; "a b</w>" is another pair.
		{"ababab", []string{"ab", "ab", "a", "b</w>"}, []int64{8, 8, 2, 6}},
		{"ababc", []string{"ab", "a", "bc</w>"}, []int64{8, 2, 10}},
		{"c", []string{"c</w>"}, []int64{7}},
		// A symbol missing from the vocabulary becomes the unk token.
		{"d", []string{"d</w>"}, []int64{1}},
	}
	for _, tt := range tests {
		t.Run(tt.word, func(t *testing.T) {
			res := tok.bpe.encodeWord(tt.word)
			if d := diff(tt.symbols, res.tokens); d != "" {
				t.Errorf("symbols %s", d)
			}
			if d := diff(tt.ids, res.ids); d != "" {
				t.Errorf("ids %s", d)
			}
		})
	}
}
