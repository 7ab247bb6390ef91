package events

// writerField reads the envelope's writer or wseq field (see Event.Writer)
// for the fast decoder; ok false hands the message to the standard decoder.
func (s *scan) writerField(key []byte, e *Event) bool {
	if string(key) == "writer" {
		var ok bool
		e.Writer, ok = s.str()
		return ok
	}
	n, ok := s.int()
	if !ok || n < 0 {
		return false
	}
	e.WriterSeq = uint64(n)
	return true
}
