using Shepherd.Engine.Storage;

namespace Shepherd.Cli.Running;

/// <summary>
/// Where the answer cache of a user's runs lives (it grows as <see cref="AnswerCacheLimits.Default"/> allows): one file
/// shared by every <c>shepherd run</c> of the user, in the user's cache folder.
/// </summary>
internal static class AnswerCaches
{
    /// <summary>
    /// The default place: <c>$XDG_CACHE_HOME/shepherd/answers.db</c>, else
    /// <c>~/.cache/shepherd/answers.db</c> (on Windows <c>%LOCALAPPDATA%\shepherd\answers.db</c>).
    /// </summary>
    public static string DefaultPath()
    {
        var root = Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg ? xdg
            : OperatingSystem.IsWindows() ? Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData)
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(root, "shepherd", "answers.db");
    }

    /// <summary>Opens the cache at <paramref name="path"/> (the default place when null).</summary>
    public static async Task<AnswerCache> OpenAsync(string? path, TimeProvider time, CancellationToken cancellationToken) =>
        await SqliteAnswerCache.OpenAsync(path ?? DefaultPath(), AnswerCacheLimits.Default.MaxBytes, AnswerCacheLimits.Default.MaxAge, time, cancellationToken);
}
