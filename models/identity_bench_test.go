package models_test

import (
	"testing"
	"time"

	"github.com/tokenflow/tokenflow/models"
)

// BenchmarkIdentityFullSize measures the identity of the random full-size
// SD 2.1-base checkpoint (about 5 GB of float32 weights, written once by
// internal/testmodel): first with an empty memo (every weight file read
// and hashed), then with the memo it left (no weight read). The files are
// in the page cache (just written or read); a cold disk adds its read time
// to the first figure.
func BenchmarkIdentityFullSize(b *testing.B) {
	m := benchFullModel(b)
	var first, repeat time.Duration
	for b.Loop() {
		root := b.TempDir()
		c, err := models.OpenModel(m.dir, models.OpenOptions{})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		id1, err := c.Identity(root)
		if err != nil {
			b.Fatal(err)
		}
		first += time.Since(start)
		start = time.Now()
		id2, err := c.Identity(root)
		if err != nil {
			b.Fatal(err)
		}
		repeat += time.Since(start)
		if id1 != id2 {
			b.Fatalf("identities %s and %s", id1, id2)
		}
	}
	b.ReportMetric(first.Seconds()/float64(b.N), "first-s/op")
	b.ReportMetric(float64(repeat.Microseconds())/1e3/float64(b.N), "repeat-ms/op")
}
