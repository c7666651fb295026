using System.CommandLine;
using System.Globalization;
using Shepherd.Cli.Running;

namespace Shepherd.Cli.Commands;

/// <summary>
/// <c>shepherd cache stats|prune|clear</c>: what the answer cache of the user's runs holds, and
/// keeping it small. <c>prune</c> removes answers past their age and, when the cache is over its
/// size, those used longest ago; <c>clear</c> removes every answer.
/// </summary>
internal static class CacheCommand
{
    public static Command Create()
    {
        var command = new Command("cache", "The answer cache of your runs: what it holds (stats), what is too old or over its size (prune), or all of it (clear)");
        command.Add(Sub("stats", "What the answer cache holds: answers, their size, the oldest", async (cache, _, ct) =>
        {
            var stats = await cache.StatsAsync(ct);
            return string.Create(CultureInfo.InvariantCulture,
                $"{cache.Where}: {RemoteOutput.Plural(stats.Entries, "answer")}, {stats.Bytes / 1024.0 / 1024.0:0.0} MB of at most {cache.MaxBytes / 1024 / 1024:N0} MB, kept up to {cache.MaxAge.TotalDays:0} days{(stats.Oldest is { } oldest ? $"; the oldest from {oldest.UtcDateTime:yyyy-MM-dd HH:mm} UTC" : "")}");
        }));
        command.Add(Sub("prune", "Remove answers older than the cache keeps them, and those used longest ago while it is over its size", async (cache, _, ct) =>
            $"{cache.Where}: {RemoteOutput.Plural(await cache.PruneAsync(ct), "answer")} removed"));
        command.Add(Sub("clear", "Remove every answer from the answer cache", async (cache, _, ct) =>
            $"{cache.Where}: {RemoteOutput.Plural(await cache.ClearAsync(ct), "answer")} removed"));
        return command;
    }

    private static Command Sub(string name, string description, Func<Engine.Storage.AnswerCache, ParseResult, CancellationToken, Task<string>> act)
    {
        var path = new Option<string?>("--cache") { Description = "The answer cache; defaults to ~/.cache/shepherd/answers.db ($XDG_CACHE_HOME/shepherd)", HelpName = "PATH" };
        var command = new Command(name, description) { path };
        command.SetAction(async (parse, cancellationToken) =>
        {
            await using var cache = await AnswerCaches.OpenAsync(parse.GetValue(path), TimeProvider.System, cancellationToken);
            await Console.Out.WriteLineAsync(await act(cache, parse, cancellationToken));
            return ExitCodes.Success;
        });
        return command;
    }
}
