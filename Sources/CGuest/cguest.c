// The guest programs live in the .S files; SwiftPM wants a C file for the header's target.
#include "cguest.h"
