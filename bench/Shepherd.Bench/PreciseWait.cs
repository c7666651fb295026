using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Shepherd.Bench;

/// <summary>
/// Blocks the calling thread until a <see cref="Stopwatch"/> timestamp, to a few microseconds,
/// without spinning a core all the while: the C library's <c>nanosleep</c> (Linux and macOS) until
/// shortly before, then a yielding spin. .NET's own timers cannot serve: they count whole
/// milliseconds and here wake 1 to 4 ms late, where an open loop at 1,000 requests a second needs
/// a start every millisecond. Elsewhere, or when the call is not there, the spin does it all.
/// </summary>
internal static class PreciseWait
{
    // nanosleep wakes some 60 to 150 µs late (the kernel's timer slack and the wake-up): the spin covers the last stretch.
    private static readonly long SpinTicks = Stopwatch.Frequency / 4000;

    private static bool _canSleep = OperatingSystem.IsLinux() || OperatingSystem.IsMacOS();

    public static void Until(long due)
    {
        long now;
        while ((now = Stopwatch.GetTimestamp()) < due)
        {
            if (_canSleep && due - now > SpinTicks)
            {
                Sleep(Stopwatch.GetElapsedTime(now, due - SpinTicks));
            }
            else if (!Thread.Yield())
            {
                Thread.SpinWait(20);
            }
        }
    }

    private static void Sleep(TimeSpan span)
    {
        var request = new Timespec { Seconds = (long)span.TotalSeconds, Nanoseconds = span.Ticks % TimeSpan.TicksPerSecond * 100 };
        try
        {
            // Woken early by a signal, it returns -1: the caller's loop looks at the clock again.
            _ = NativeMethods.nanosleep(ref request, IntPtr.Zero);
        }
        catch (Exception exception) when (exception is DllNotFoundException or EntryPointNotFoundException)
        {
            _canSleep = false;
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    private static class NativeMethods
    {
        [DllImport("libc", SetLastError = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int nanosleep(ref Timespec request, IntPtr remaining);
    }
}
