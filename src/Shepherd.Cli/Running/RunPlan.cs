using Shepherd.Cli.Commands;
using Shepherd.Engine.Model;
using Shepherd.Engine.Native;
using Shepherd.Engine.Storage;

namespace Shepherd.Cli.Running;

/// <summary>
/// The mode and deadline of <c>run</c>'s batch: chosen for a new batch, kept for a saved one
/// unless <c>--mode</c> or <c>--deadline</c> is given again, which then replaces it (as
/// <c>--budget</c> does). A deadline counts from the batch's creation, so the same command run
/// again after a kill keeps the deadline it had.
/// </summary>
internal static class RunPlan
{
    /// <summary>
    /// The mode of a new batch whose first request names <paramref name="model"/> at
    /// <paramref name="endpoint"/>; a mode no upstream can serve is refused (exit 2) naming what is missing.
    /// </summary>
    public static BatchMode ForNew(RunSettings settings, NativeBatchRunner runner, string? model, string? endpoint) =>
        endpoint is null
            // A first line too broken to name its url: the import refuses the input, whatever the mode.
            ? settings.Mode ?? BatchMode.Realtime
            : Checked(runner.ChooseMode(settings.Mode, model, endpoint, settings.Deadline is not null), settings.ConfigPath);

    /// <summary>Refuses (exit 2) a mode given on the command line that some model of the batch cannot run in.</summary>
    public static void Check(RunSettings settings, NativeBatchRunner runner, IEnumerable<string> models, string? endpoint)
    {
        if (settings.Mode is not { } asked || endpoint is null)
        {
            return;
        }

        foreach (var model in models)
        {
            Checked(runner.ChooseMode(asked, model, endpoint, hasDeadline: true), settings.ConfigPath);
        }
    }

    /// <summary>
    /// Gives a saved batch the mode and deadline given again on the command line, when they differ
    /// from what it has. Returns true when it changed.
    /// </summary>
    public static async Task<bool> ReviseAsync(IBatchStore store, BatchRecord batch, RunSettings settings, CancellationToken cancellationToken)
    {
        var mode = settings.Mode ?? batch.Mode;
        var expiresAt = settings.Deadline is { } deadline ? batch.CreatedAt + deadline : batch.ExpiresAt;
        if (batch.HasEnded || (mode == batch.Mode && expiresAt == batch.ExpiresAt))
        {
            return false;
        }

        await store.SetPlanAsync(batch.Id, mode, expiresAt, cancellationToken);
        return true;
    }

    /// <summary>How the batch goes, for the line <c>run</c> prints as it starts sending.</summary>
    public static string Describe(BatchRecord batch, string target, int concurrency) => batch.Mode switch
    {
        BatchMode.Native => $"to {target}'s batch API (mode native)",
        BatchMode.Flex => $"to {target}'s flex tier (mode flex)",
        BatchMode.Auto => $"to {target} in mode auto: its batch API or flex tier where it has one{(batch.ExpiresAt is { } deadline ? $", realtime in time for the deadline ({deadline.UtcDateTime:yyyy-MM-dd HH:mm:ss} UTC)" : "")}",
        _ => $"to {target}, up to {concurrency} at a time",
    };

    private static BatchMode Checked(ModeChoice choice, string? configPath)
    {
        if (choice.Refusal is not { } refusal)
        {
            return choice.Mode;
        }

        var setting = choice.Mode == BatchMode.Native ? "\"batchApi\": true" : "\"flex\": true";
        var where = configPath is null ? "an upstream in a configuration file (--config)" : $"the upstream in {ShownPath.Of(configPath)}";
        throw new UsageException($"--mode {BatchModeWords.Of(choice.Mode)}: {refusal}. Declare it with {setting} on {where}, or choose another --mode.");
    }
}
