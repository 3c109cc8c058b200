# Warnings every ct target is built with; the build must stay clean with gcc and clang.
function(ct_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wshadow -Wstrict-prototypes
    -Wmissing-prototypes -Wpointer-arith -Wformat=2 -Wno-unused-parameter)
endfunction()
