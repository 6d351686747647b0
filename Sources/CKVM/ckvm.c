// The header carries everything; SwiftPM wants one source file per C target.
#include "ckvm.h"
