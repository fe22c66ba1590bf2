package tokenizer

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// readConformanceFiles returns the real CLIP vocab.json and merges.txt (SD
// 1.5 and SD 2.1 share them).
func readConformanceFiles(t testing.TB) (vocab, merges []byte) {
	t.Helper()
	dir := filepath.Join(conformanceDir, "tiny-sd15", "tokenizer")
	vocab, err := os.ReadFile(filepath.Join(dir, vocabFile))
	if err != nil {
		t.Fatal(err)
	}
	merges, err = os.ReadFile(filepath.Join(dir, mergesFile))
	if err != nil {
		t.Fatal(err)
	}
	return vocab, merges
}

// TestNewConformance builds both checkpoints' tokenizers from bytes, with
// the options a single-file checkpoint would pass, and checks them against
// what transformers made of the conformance prompts.
func TestNewConformance(t *testing.T) {
	vocab, merges := readConformanceFiles(t)
	for _, tt := range []struct {
		model string
		opts  Options
	}{
		{"tiny-sd15", Options{}},         // pads with <|endoftext|>
		{"tiny-sd21", Options{Pad: "!"}}, // pads with "!"
	} {
		t.Run(tt.model, func(t *testing.T) {
			_, pf := loadConformance(t, tt.model)
			tok, err := New(vocab, merges, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			got := []int64{tok.BOSID(), tok.EOSID(), tok.PadID(), int64(tok.MaxLength())}
			want := []int64{pf.BOSTokenID, pf.EOSTokenID, pf.PadTokenID, int64(pf.ModelMaxLength)}
			if d := diff(want, got); d != "" {
				t.Errorf("bos, eos, pad, max length %s", d)
			}
			for _, p := range pf.Prompts {
				checkEncode(t, tok, p.Prompt, p.InputIDs, p.Truncated)
			}
		})
	}
}

func TestNewOptions(t *testing.T) {
	tok, err := New([]byte(tinyVocab), []byte(tinyMerges), Options{Pad: "!", Additional: []string{"", "ab"}, MaxLength: 6})
	if err != nil {
		t.Fatal(err)
	}
	// "ab" is split out as a special token before BPE: without it, "abc"
	// would be "a bc</w>" (2, 10).
	ids, truncated := tok.Encode("abc")
	if d := diff([]int64{0, 8, 7, 1, 11, 11}, ids); d != "" || truncated {
		t.Errorf("Encode(\"abc\") truncated %v, %s", truncated, d)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name          string
		vocab, merges string
		opts          Options
		want          string
		file          *FileError  // when not nil: errors.As gives one with this File and Line
		token         *TokenError // when not nil: errors.As gives this one
	}{
		{
			name: "vocab.json not JSON", vocab: `{"a": 1,`, merges: tinyMerges,
			want: "vocab.json: not valid JSON: unexpected EOF",
			file: &FileError{File: vocabFile},
		},
		{
			name: "merges.txt line", vocab: tinyVocab, merges: "#version: 0.2\na b\nc\n",
			want: `merges.txt:3: want two space-separated symbols, got "c"`,
			file: &FileError{File: mergesFile, Line: 3},
		},
		{
			name: "vocab.json not UTF-8", vocab: "{\"a\xff\": 1}", merges: tinyMerges,
			want: "vocab.json: not valid UTF-8 (byte 3)",
			file: &FileError{File: vocabFile},
		},
		{
			name: "merges.txt not UTF-8", vocab: tinyVocab, merges: "#version: 0.2\r\na b\rc \xe2\x80 \x80\n",
			want: "merges.txt:3: not valid UTF-8",
			file: &FileError{File: mergesFile, Line: 3},
		},
		{
			name: "merges.txt line after blank lines", vocab: tinyVocab, merges: "\n \n#version: 0.2\na b c\n",
			want: `merges.txt:4: want two space-separated symbols, got "a b c"`,
			file: &FileError{File: mergesFile, Line: 4},
		},
		{
			name: "pad token not in the vocabulary", vocab: tinyVocab, merges: tinyMerges, opts: Options{Pad: "<pad>"},
			want:  `pad_token "<pad>" is not in vocab.json`,
			token: &TokenError{Field: "pad_token", Token: "<pad>"},
		},
		{
			name: "default bos token not in the vocabulary", vocab: `{"<|endoftext|>": 0}`, merges: tinyMerges,
			want:  `bos_token "<|startoftext|>" is not in vocab.json`,
			token: &TokenError{Field: "bos_token", Token: "<|startoftext|>"},
		},
		{
			name: "additional token not in the vocabulary", vocab: tinyVocab, merges: tinyMerges, opts: Options{Additional: []string{"ab", "", "zz"}},
			want:  `additional_special_tokens[2] "zz" is not in vocab.json`,
			token: &TokenError{Field: "additional_special_tokens[2]", Token: "zz"},
		},
		{
			name: "max length too small", vocab: tinyVocab, merges: tinyMerges, opts: Options{MaxLength: 1},
			want: "tokenizer: max length 1 is not a usable sequence length (2..65536)",
		},
		{
			name: "negative max length", vocab: tinyVocab, merges: tinyMerges, opts: Options{MaxLength: -77},
			want: "tokenizer: max length -77 is not a usable sequence length (2..65536)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := New([]byte(tt.vocab), []byte(tt.merges), tt.opts)
			if err == nil {
				t.Fatalf("New succeeded (%+v), want an error %q", tok, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error (-want +got):\n-%s\n+%s", tt.want, err)
			}
			if tt.file != nil {
				var fe *FileError
				if !errors.As(err, &fe) || fe.File != tt.file.File || fe.Line != tt.file.Line {
					t.Errorf("error %#v, want a *FileError with File %q, Line %d", err, tt.file.File, tt.file.Line)
				}
			}
			if tt.token != nil {
				var te *TokenError
				if !errors.As(err, &te) || *te != *tt.token {
					t.Errorf("error %#v, want %#v", err, tt.token)
				}
			}
		})
	}
}

// TestParseMergesAsPython checks how merges.txt is read against what
// CLIPTokenizer's open(..., encoding="utf-8").read().strip().split("\n") and
// str.split() give (CPython 3.11).
func TestParseMergesAsPython(t *testing.T) {
	tests := []struct {
		name, in string
		want     []mergePair
	}{
		{"universal newlines", "#version: 0.2\r\na b\rc d\r\n", []mergePair{{"a", "b"}, {"c", "d"}}},
		{"information separators are whitespace", "#v\na\x1fb\n", []mergePair{{"a", "b"}}},
		{"stripped with Python's whitespace", "\x1c#v\na b\x1d", []mergePair{{"a", "b"}}},
		{"ideographic space", "#v\n\u3000a b", []mergePair{{"a", "b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMerges([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if d := diff(tt.want, got); d != "" {
				t.Error(d)
			}
		})
	}
}
