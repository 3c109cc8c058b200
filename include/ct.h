/* ct.h — everything in libct. Include the module headers instead to keep builds lean. */
#ifndef CT_H
#define CT_H

#include "ct/base.h"
#include "ct/chan.h"
#include "ct/file.h"
#include "ct/pool.h"
#include "ct/task.h"
#include "ct/time.h"
#include "ct/token.h"
#include "ct/wait.h"

#endif
