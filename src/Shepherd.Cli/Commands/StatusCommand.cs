using System.CommandLine;
using Shepherd.Cli.Running;

namespace Shepherd.Cli.Commands;

/// <summary><c>shepherd status ID</c>: a batch on a Shepherd server, as it is now.</summary>
internal static class StatusCommand
{
    public static Command Create()
    {
        var id = RemoteOptionSet.BatchId();
        var remote = new RemoteOptionSet("Print the batch as JSON on stdout");
        var command = new Command("status", "Show a batch on a Shepherd server: status, counts, tokens, cost, times, result files, and why its input was refused") { id };
        remote.AddTo(command);
        remote.SetAction(command, async (context, cancellationToken) =>
        {
            var batch = await context.Client.GetBatchAsync(context.Parse.GetValue(id)!, cancellationToken);
            if (context.Json)
            {
                await RemoteOutput.WriteJsonAsync(context.Stdout, json => RemoteOutput.WriteBatch(json, batch));
            }
            else
            {
                RemoteOutput.WriteDetails(context.Console, batch, context.Time.GetUtcNow());
            }

            return ExitCodes.Success;
        });
        return command;
    }
}
