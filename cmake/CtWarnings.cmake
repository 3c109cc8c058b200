# Warnings every ct target is built with; the build must stay clean with gcc and clang.
function(ct_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wshadow -Wpointer-arith -Wformat=2
    -Wno-unused-parameter $<$<COMPILE_LANGUAGE:C>:-Wstrict-prototypes -Wmissing-prototypes>)
endfunction()
