package models

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/tokenflow/tokenflow/internal/atomicfile"
)

// A model's identity covers the bytes of its weight files (two fine-tunes
// of one layout must not share inversions), but reading gigabytes on every
// run is not acceptable: each weight file's SHA-256 is remembered in
// <cache root>/weight-hashes.json, keyed by the file's resolved absolute
// path, size, modification time and inode, so a checkpoint is read once.
// Any change of those four (a rewrite, a copy over it, a touch) hashes the
// file again. The memo is written under a temporary name and renamed into
// place; one that cannot be read or parsed is ignored and rewritten, and
// one that cannot be written costs only the next run's time.

// weightMemoName is the memo's file name in the cache root.
const weightMemoName = "weight-hashes.json"

// weightMemoVersion is the memo's format; another is ignored.
const weightMemoVersion = 1

type weightMemo struct {
	Version int                        `json:"version"`
	Files   map[string]weightMemoEntry `json:"files"` // by resolved absolute path
}

// fileStamp is what must be unchanged for a remembered hash to hold.
type fileStamp struct {
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime_ns"`
	Inode   uint64 `json:"inode"`
}

type weightMemoEntry struct {
	fileStamp
	SHA256 string `json:"sha256"`
}

// stampOf is the resolved, absolute path of a file and its stamp.
func stampOf(path string) (string, fileStamp, error) {
	p, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", fileStamp{}, err
	}
	if p, err = filepath.Abs(p); err != nil {
		return "", fileStamp{}, err
	}
	st, err := os.Stat(p)
	if err != nil {
		return "", fileStamp{}, err
	}
	return p, fileStamp{Size: st.Size(), ModTime: st.ModTime().UnixNano(), Inode: inodeOf(st)}, nil
}

func (e weightMemoEntry) matches(s fileStamp) bool {
	return e.fileStamp == s && len(e.SHA256) == 64
}

// contentHash hashes a file's bytes; a variable so that tests can count
// the reads.
var contentHash = fileSHA256

// memoMu serialises the memo's read-modify-write within the process;
// between processes, the last rename wins and a lost entry is hashed again.
var memoMu sync.Mutex

// weightHashes returns the SHA-256 of each file, from the memo under root
// when it holds the file unchanged, else by reading the file (and then
// remembering it). root "" means no memo: every file is read.
func weightHashes(root string, files []string) ([]string, error) {
	memoMu.Lock()
	defer memoMu.Unlock()
	memo := readWeightMemo(root)
	out := make([]string, len(files))
	type miss struct {
		i     int
		path  string
		stamp fileStamp
	}
	var misses []miss
	for i, f := range files {
		p, s, err := stampOf(f)
		if err != nil {
			return nil, fmt.Errorf("model identity: %w", err)
		}
		if e, ok := memo.Files[p]; ok && e.matches(s) {
			out[i] = e.SHA256
			continue
		}
		misses = append(misses, miss{i, p, s})
	}
	// The files are hashed side by side, largest first (a checkpoint is
	// one large UNet file and smaller ones): SHA-256 is sequential within
	// a file, so this is what more cores can do.
	slices.SortStableFunc(misses, func(a, b miss) int { return cmp.Compare(b.stamp.Size, a.stamp.Size) })
	errs := make([]error, len(files))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(misses)) {
		wg.Go(func() {
			for k := int(next.Add(1)) - 1; k < len(misses); k = int(next.Add(1)) - 1 {
				m := misses[k]
				out[m.i], errs[m.i] = contentHash(m.path)
			}
		})
	}
	wg.Wait()
	changed := false
	for _, m := range misses {
		if errs[m.i] != nil {
			return nil, fmt.Errorf("model identity: %w", errs[m.i])
		}
		// A file that changed while it was read gives no lasting answer:
		// use it for this run, remember nothing.
		if pa, after, err := stampOf(files[m.i]); err == nil && pa == m.path && after == m.stamp {
			memo.Files[m.path] = weightMemoEntry{m.stamp, out[m.i]}
			changed = true
		}
	}
	if changed && root != "" {
		writeWeightMemo(root, memo)
	}
	return out, nil
}

// readWeightMemo reads the memo; a missing, unreadable or malformed one is
// an empty memo (it will be rewritten).
func readWeightMemo(root string) weightMemo {
	empty := weightMemo{Version: weightMemoVersion, Files: map[string]weightMemoEntry{}}
	if root == "" {
		return empty
	}
	b, err := os.ReadFile(filepath.Join(root, weightMemoName))
	if err != nil {
		return empty
	}
	var m weightMemo
	if json.Unmarshal(b, &m) != nil || m.Version != weightMemoVersion || m.Files == nil {
		return empty
	}
	return m
}

// writeWeightMemo writes the memo atomically, best effort, dropping the
// entries of files that are gone or changed.
func writeWeightMemo(root string, m weightMemo) {
	for p, e := range m.Files {
		if q, s, err := stampOf(p); err != nil || q != p || !e.matches(s) {
			delete(m.Files, p)
		}
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return
	}
	// Best effort: a memo not written is hashed again next run.
	atomicfile.WriteFile(filepath.Join(root, weightMemoName), append(b, '\n'), 0o666)
}
