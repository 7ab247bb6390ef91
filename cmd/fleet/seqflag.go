package main

import (
	"fmt"
	"strconv"

	"github.com/alecthomas/kong"
)

// seqFlag is a stream sequence given on the command line. Sequences start
// at 1, so 0 is refused (an absent flag is 0: "no bound").
type seqFlag uint64

// Decode implements kong.MapperValue.
func (s *seqFlag) Decode(ctx *kong.DecodeContext) error {
	var text string
	if err := ctx.Scan.PopValueInto("sequence", &text); err != nil {
		return err
	}
	n, err := strconv.ParseUint(text, 10, 64)
	if err != nil || n == 0 {
		return fmt.Errorf("%q: must be a stream sequence, 1 or more (leave the flag out for no bound)", text)
	}
	*s = seqFlag(n)
	return nil
}
