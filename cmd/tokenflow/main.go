// Command tokenflow edits a video from a text prompt with a Stable Diffusion
// model, keeping the edit consistent across frames (TokenFlow, ICLR 2024).
package main

import "os"

func main() { os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr)) }
