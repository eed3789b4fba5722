// The Catch2 main of the CPU exercise tests.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
