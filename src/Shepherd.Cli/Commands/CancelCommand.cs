using System.CommandLine;
using Shepherd.Cli.Running;
using Shepherd.Client;

namespace Shepherd.Cli.Commands;

/// <summary><c>shepherd cancel ID</c>: stops a batch on a Shepherd server; what finished keeps its result.</summary>
internal static class CancelCommand
{
    public static Command Create()
    {
        var id = RemoteOptionSet.BatchId();
        var remote = new RemoteOptionSet("Print the batch as JSON on stdout");
        var command = new Command("cancel", "Cancel a batch on a Shepherd server: nothing more is sent, and what finished keeps its result") { id };
        remote.AddTo(command);
        remote.SetAction(command, async (context, cancellationToken) =>
        {
            var batch = await context.Client.CancelBatchAsync(context.Parse.GetValue(id)!, cancellationToken);
            if (context.Json)
            {
                await RemoteOutput.WriteJsonAsync(context.Stdout, json => RemoteOutput.WriteBatch(json, batch));
                return ExitCodes.Success;
            }

            var done = RemoteOutput.Outcome(batch);
            await context.Stdout.WriteLineAsync(batch.Status switch
            {
                BatchStatus.Cancelling => $"{batch.Id} cancelling: {done}; nothing more is sent, and requests in flight are still returning ('shepherd wait {batch.Id}' waits for the end).",
                BatchStatus.Cancelled => $"{batch.Id} cancelled: {done}; nothing more is sent.",
                _ => $"{batch.Id} had already ended ({batch.StatusName}): {done}; there was nothing to cancel.",
            });
            return ExitCodes.Success;
        });
        return command;
    }
}
