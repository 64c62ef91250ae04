#!/bin/sh
# Baseline for bench/era.sh: classify every tag with plain git plumbing
# (git ls-tree per tag, git show for the files that decide between eras).
# Usage: era-shell-loop.sh OLLAMA_MIRROR
G="git -C $1"
for t in $($G tag); do
  paths=$($G ls-tree -r --name-only --full-tree "$t" -- LLAMA_CPP_VERSION CMakePresets.json llama/vendoring \
    llama/vendoring.env llm/generate/gen_linux.sh llm/llama.cpp/generate_linux.go llm/llama.cpp/generate.go \
    llm/ggml.c llama/ggml.c llama/binding/binding.cpp 2>/dev/null | tr '\n' ' ')
  era=?
  case "$paths" in
    *LLAMA_CPP_VERSION*) era=5 ;;
    *CMakePresets.json*) if $G show "$t:CMakePresets.json" | grep -q '"name": *"Vulkan"'; then era=4; else era=3; fi ;;
    *llama/vendoring*) era=2 ;;
    *gen_linux.sh*) if $G show "$t:llm/ext_server/CMakeLists.txt" 2>/dev/null | grep -q 'set(TARGET ext_server)'; then era=1a; else era=1b; fi ;;
    *generate*|*ggml.c*|*binding*) era=0 ;;
  esac
  echo "$t $era"
done
