namespace Shepherd.Cli.Commands;

/// <summary>The exit codes of <c>shepherd</c>, as the README documents them.</summary>
internal static class ExitCodes
{
    /// <summary>Done; every request succeeded.</summary>
    public const int Success = 0;

    /// <summary>Something failed that is not the user's input: the store, the file system.</summary>
    public const int Error = 1;

    /// <summary>The command line or the input file is invalid; nothing was sent.</summary>
    public const int InvalidInput = 2;

    /// <summary>The batch finished, but some requests failed; they are in the errors file.</summary>
    public const int SomeFailed = 3;

    /// <summary>A wait gave up (<c>--timeout</c>) before the batch ended; the batch goes on on the server.</summary>
    public const int StillRunning = 4;

    /// <summary>The provider refused the API key; nothing was spent on the refused requests, and running again with the right key resumes.</summary>
    public const int KeyRefused = 5;

    /// <summary>An upstream could not be reached: before anything was sent, or for longer than <c>--max-outage</c>; running again resumes.</summary>
    public const int Unreachable = 6;

    /// <summary>Another <c>shepherd</c> process is using the state file; nothing was done.</summary>
    public const int Busy = 7;

    /// <summary>Interrupted (Ctrl+C); running the same command again resumes.</summary>
    public const int Interrupted = 130;

    /// <summary>The word for <paramref name="exitCode"/> in <c>--json</c> documents.</summary>
    public static string Word(int exitCode) => exitCode switch
    {
        Success => "success",
        InvalidInput => "invalid_input",
        SomeFailed => "some_failed",
        StillRunning => "still_running",
        KeyRefused => "key_refused",
        Unreachable => "unreachable",
        Busy => "busy",
        Interrupted => "interrupted",
        _ => "error",
    };
}
