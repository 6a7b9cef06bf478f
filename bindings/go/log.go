package tong

// #include <tong.h>
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

// LogLevel is how much a library message matters (tong_log_level in tong.h).
type LogLevel int

// The levels of library messages, most important first.
const (
	LogError LogLevel = 1 // a call failed
	LogWarn  LogLevel = 2 // a problem the engine worked around (a failed poststart hook...)
	LogInfo  LogLevel = 3 // the outcome of each lifecycle call
	LogDebug LogLevel = 4 // every call, with its arguments
)

// LogFunc receives the library's messages up to RuntimeOptions.LogLevel. It is called
// on the goroutine making the call, from inside it: it must not call the library.
type LogFunc func(level LogLevel, message string)

//export tongGoLog
func tongGoLog(data unsafe.Pointer, level C.int, message *C.char) {
	f, ok := cgo.Handle(uintptr(data)).Value().(LogFunc)
	if ok {
		f(LogLevel(level), C.GoString(message))
	}
}
