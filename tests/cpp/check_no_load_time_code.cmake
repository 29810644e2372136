# The files compiled for AVX2 or AVX-512 (the GEMM micro-kernels, the vector
# math) may define functions and constant data, but no static initialiser: one
# would run at load time, before the CPU is asked what it supports, and crash
# every CPU without that instruction set. (The vector-math tables were once
# built by such code.) Run by ctest: cmake -DOBJECTS=a.o|b.o -DNM=nm -P this file.
string(REPLACE "|" ";" objects "${OBJECTS}")
set(checked 0)
foreach(object IN LISTS objects)
  if(object MATCHES "avx")
    execute_process(COMMAND "${NM}" "${object}" OUTPUT_VARIABLE symbols RESULT_VARIABLE failed)
    if(failed)
      message(FATAL_ERROR "${NM} could not read ${object}")
    endif()
    if(symbols MATCHES "_GLOBAL__sub_I|__static_initialization")
      message(FATAL_ERROR "${object} has a static initialiser: code compiled for AVX would run at load time")
    endif()
    math(EXPR checked "${checked} + 1")
  endif()
endforeach()
if(checked EQUAL 0)
  message(FATAL_ERROR "no object file compiled for AVX found among: ${OBJECTS}")
endif()
message(STATUS "${checked} object files compiled for AVX, none with load-time code")
