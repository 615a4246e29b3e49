// Linked into the static qemu-lio only (CMakeLists.txt, QEMU_LIO_LINK=static), through
// -Wl,--wrap: crtbeginT.o's calls to register and deregister the binary's .eh_frame land here
// and do nothing. Registered frames make libgcc sort every FDE of the binary at the first
// throw (a large, fixed cost per start: most runs throw and catch at least once); unregistered,
// the unwinder finds them through PT_GNU_EH_FRAME (the link has --eh-frame-hdr) with a binary
// search, as in a dynamic executable. The unit test qemu_lio_throws runs the binary into a
// caught exception, so a toolchain where this no longer holds fails the build's tests.
extern "C" {
void __wrap___register_frame_info(const void*, void*) {}
void* __wrap___deregister_frame_info(const void*) { return nullptr; }
}
