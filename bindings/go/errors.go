package tong

/*
#include <tong.h>
*/
import "C"

import "fmt"

// Code is a libtong error code (tong_error_code in tong.h). The numbers are part of the
// C ABI and never change; new codes may be added.
type Code int

// The error codes of libtong.
const (
	CodeOK              Code = C.TONG_OK
	CodeInvalidArgument Code = C.TONG_ERR_INVALID_ARGUMENT
	CodeNotFound        Code = C.TONG_ERR_NOT_FOUND
	CodeAlreadyExists   Code = C.TONG_ERR_ALREADY_EXISTS
	CodeInvalidState    Code = C.TONG_ERR_INVALID_STATE
	CodePlugin          Code = C.TONG_ERR_PLUGIN
	CodeOS              Code = C.TONG_ERR_OS
	CodeContainer       Code = C.TONG_ERR_CONTAINER
	CodePanic           Code = C.TONG_ERR_PANIC
	CodeInternal        Code = C.TONG_ERR_INTERNAL
)

// String returns the C name of the code, such as "TONG_ERR_NOT_FOUND".
func (c Code) String() string {
	return C.GoString(C.tong_error_code_name(C.int32_t(c)))
}

// Error is what every failed call returns: the library's code and message.
// Compare with errors.Is against the Err* sentinels, or read Code.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "tong: " + e.Code.String()
	}
	return fmt.Sprintf("tong: %s (%s)", e.Message, e.Code)
}

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, tong.ErrNotFound) works whatever the message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Sentinels for errors.Is.
var (
	ErrInvalidArgument = &Error{Code: CodeInvalidArgument}
	ErrNotFound        = &Error{Code: CodeNotFound}
	ErrAlreadyExists   = &Error{Code: CodeAlreadyExists}
	ErrInvalidState    = &Error{Code: CodeInvalidState}
	ErrPlugin          = &Error{Code: CodePlugin}
	ErrOS              = &Error{Code: CodeOS}
	ErrContainer       = &Error{Code: CodeContainer}
	ErrPanic           = &Error{Code: CodePanic}
	ErrInternal        = &Error{Code: CodeInternal}
	// ErrClosed is returned by methods of a closed Runtime or Container.
	ErrClosed = &Error{Code: CodeInvalidArgument, Message: "handle is closed"}
)

// check converts a call's code and error object, freeing the latter.
func check(code C.enum_tong_error_code, cerr *C.tong_error) error {
	if code == C.TONG_OK {
		return nil
	}
	e := &Error{Code: Code(code)}
	if cerr != nil {
		e.Message = C.GoString(C.tong_error_message(cerr))
		C.tong_error_free(cerr)
	}
	return e
}
