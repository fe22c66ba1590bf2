package video

import (
	"context"
	"path/filepath"
	"testing"
)

// Throughput at the working size, 512x512, in frames per second.
const benchFrames = 50

func BenchmarkDecode512(b *testing.B) { benchDecode(b, "512x512", Size{512, 512}) }

// Decoding 1280x720 source frames down to the default 680x384.
func BenchmarkDecode720pResize(b *testing.B) { benchDecode(b, "1280x720", Size{}) }

// benchDecode decodes a benchFrames-frame clip of source size src at size.
func benchDecode(b *testing.B, src string, size Size) {
	in := probe(b, testClip(b, b.TempDir(), "bench.mp4", src, "25", benchFrames, false))
	opts := DecodeOptions{Size: size, Range: Whole()}
	b.ResetTimer()
	for b.Loop() {
		n := 0
		for _, err := range Frames(context.Background(), in, opts) {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != benchFrames {
			b.Fatalf("decoded %d frames", n)
		}
	}
	b.ReportMetric(float64(benchFrames*b.N)/b.Elapsed().Seconds(), "frames/s")
}

func BenchmarkEncode512(b *testing.B) {
	dir := b.TempDir()
	in := probe(b, testClip(b, dir, "bench.mp4", "512x512", "25", benchFrames, false))
	clip := decodeAll(b, in, DecodeOptions{Size: Size{512, 512}, Range: Whole()})
	out := filepath.Join(dir, "out.mp4")
	b.ResetTimer()
	for b.Loop() {
		if err := encodeClip(context.Background(), out, clip, EncodeOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(benchFrames*b.N)/b.Elapsed().Seconds(), "frames/s")
}
