package tokenizer

import (
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkReadVocab reads the real 49,408-entry CLIP vocab.json (what Load
// spends most of its time on).
func BenchmarkReadVocab(b *testing.B) {
	path := filepath.Join(conformanceDir, "tiny-sd15", "tokenizer", vocabFile)
	for b.Loop() {
		data, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		vocab, err := parseVocab(data)
		if err != nil {
			b.Fatal(err)
		}
		if len(vocab) != 49408 {
			b.Fatalf("%d entries, want 49408", len(vocab))
		}
	}
}
