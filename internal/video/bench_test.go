package video

import (
	"context"
	"path/filepath"
	"testing"
)

// Throughput at the working size, 512x512, in frames per second.
const benchFrames = 50

func BenchmarkDecode512(b *testing.B) {
	path := testClip(b, b.TempDir(), "bench.mp4", "512x512", "25", benchFrames, false)
	in := probe(b, path)
	opts := DecodeOptions{Size: Size{512, 512}, Range: Whole()}
	b.ResetTimer()
	for b.Loop() {
		n := 0
		err := Decode(context.Background(), in, opts, func(Frame) error { n++; return nil })
		if err != nil || n != benchFrames {
			b.Fatalf("decoded %d frames: %v", n, err)
		}
	}
	b.ReportMetric(float64(benchFrames*b.N)/b.Elapsed().Seconds(), "frames/s")
}

// Decoding 1280x720 source frames down to the default 680x384.
func BenchmarkDecode720pResize(b *testing.B) {
	path := testClip(b, b.TempDir(), "bench.mp4", "1280x720", "25", benchFrames, false)
	in := probe(b, path)
	opts := DecodeOptions{Range: Whole()}
	b.ResetTimer()
	for b.Loop() {
		n := 0
		err := Decode(context.Background(), in, opts, func(Frame) error { n++; return nil })
		if err != nil || n != benchFrames {
			b.Fatalf("decoded %d frames: %v", n, err)
		}
	}
	b.ReportMetric(float64(benchFrames*b.N)/b.Elapsed().Seconds(), "frames/s")
}

func BenchmarkEncode512(b *testing.B) {
	dir := b.TempDir()
	in := probe(b, testClip(b, dir, "bench.mp4", "512x512", "25", benchFrames, false))
	clip, err := DecodeAll(context.Background(), in, DecodeOptions{Size: Size{512, 512}, Range: Whole()})
	if err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(dir, "out.mp4")
	b.ResetTimer()
	for b.Loop() {
		if err := Encode(context.Background(), out, clip, EncodeOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(benchFrames*b.N)/b.Elapsed().Seconds(), "frames/s")
}
