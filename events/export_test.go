package events

// FastDecode and DecodeStandard expose the two decoders to the differential tests.
var (
	FastDecode     = fastDecode
	DecodeStandard = decodeStandard
)
