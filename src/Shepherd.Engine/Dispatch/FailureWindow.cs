namespace Shepherd.Engine.Dispatch;

/// <summary>
/// The last <see cref="Size"/> answers of a lane, each a transient failure or not, to tell a
/// sprinkle of failures among successes from a run of them. At 2% random failures, eight of 32
/// line up about once in six million answers; an overloaded or failing upstream gets there
/// within its first eight. Not thread-safe: the dispatcher's loop owns it.
/// </summary>
internal sealed class FailureWindow
{
    /// <summary>How many answers the window holds.</summary>
    public const int Size = 32;

    /// <summary>Failures among the last <see cref="Size"/> answers that make a run.</summary>
    public const int RunThreshold = 8;

    private uint _bits;
    private int _failures;

    /// <summary>True when failures are not a sprinkle: at least <see cref="RunThreshold"/> of the last <see cref="Size"/> answers failed.</summary>
    public bool InRun => _failures >= RunThreshold;

    /// <summary>Records the newest answer; the oldest leaves the window.</summary>
    public void Add(bool failed)
    {
        var oldest = _bits >> (Size - 1);
        _bits = (_bits << 1) | (failed ? 1u : 0u);
        _failures += (failed ? 1 : 0) - (int)oldest;
    }
}
