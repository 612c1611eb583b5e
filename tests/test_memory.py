"""The allocator setting that keeps large freed blocks for reuse (lamar_hf.training.memory)."""

import os
import subprocess
import sys
import textwrap

import pytest

from lamar_hf.training.memory import USER_SETTINGS

GLIBC = sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION") is not None


def run_python(code: str, **environment) -> str:
    env = {name: value for name, value in os.environ.items() if name not in USER_SETTINGS}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env | environment,
                            capture_output=True, text=True, check=True)
    return result.stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_freed_blocks_are_kept_and_a_second_call_changes_nothing():
    # mallinfo2's hblkhd: the bytes held in mmapped blocks. A 64 MiB block is mmapped by default, from the heap once set.
    code = """
        import ctypes
        from lamar_hf.training.memory import reuse_freed_memory

        class MallInfo2(ctypes.Structure):
            _fields_ = [(name, ctypes.c_size_t) for name in (
                "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

        libc = ctypes.CDLL("libc.so.6")
        libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
        libc.free.argtypes = (ctypes.c_void_p,)
        libc.mallinfo2.restype = MallInfo2

        def mmapped_while_holding(size):
            block = libc.malloc(size)
            mmapped = libc.mallinfo2().hblkhd
            libc.free(block)
            return mmapped

        before = mmapped_while_holding(64 << 20)
        print(reuse_freed_memory(), reuse_freed_memory(), before >= 64 << 20, mmapped_while_holding(64 << 20) < 64 << 20)
    """
    assert run_python(code) == "True True True True"


def test_the_users_own_allocator_settings_stand():
    code = "from lamar_hf.training.memory import reuse_freed_memory; print(reuse_freed_memory())"
    assert run_python(code, MALLOC_MMAP_THRESHOLD_="65536") == "False"
    assert run_python(code, LD_PRELOAD="") == str(GLIBC)  # an empty setting is no choice


@pytest.mark.skipif(not GLIBC, reason="mallopt and malloc_trim are glibc's")
def test_freed_memory_the_heap_keeps_goes_back_once_released_and_the_trainer_releases_it():
    # A touched 256 MiB block, freed: kept resident in the heap, then handed back by release_freed_memory.
    code = """
        import ctypes
        from lamar_hf.training.memory import ReleaseFreedMemory, release_freed_memory, reuse_freed_memory
        from lamar_hf.training.trainer import recommender_trainer
        from lamar_hf.training import RecommenderTrainingArguments, build_model, get_backbone, ModelArguments

        def resident_mib():
            return int(open("/proc/self/statm").read().split()[1]) * 4096 >> 20

        libc = ctypes.CDLL("libc.so.6")
        libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
        libc.free.argtypes = (ctypes.c_void_p,)
        print(release_freed_memory())  # nothing kept before reuse_freed_memory
        reuse_freed_memory()
        before = resident_mib()
        block = libc.malloc(256 << 20)
        ctypes.memset(block, 1, 256 << 20)
        libc.free(block)
        kept = resident_mib() - before
        release_freed_memory()
        released = resident_mib() - before
        model = build_model(ModelArguments(), num_items=20)
        trainer = recommender_trainer(model, get_backbone("sasrec"), RecommenderTrainingArguments(
            output_dir="unused", eval_strategy="no", save_strategy="no", load_best_model_at_end=False))
        releases = any(isinstance(callback, ReleaseFreedMemory) for callback in trainer.callback_handler.callbacks)
        print(kept >= 250, released <= 16, releases)
    """
    assert run_python(code).splitlines() == ["False", "True True True"]
