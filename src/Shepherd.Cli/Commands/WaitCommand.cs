using System.CommandLine;
using Shepherd.Cli.Running;

namespace Shepherd.Cli.Commands;

/// <summary><c>shepherd wait ID</c>: follows a batch on a Shepherd server until it ends, with progress.</summary>
internal static class WaitCommand
{
    public static Command Create()
    {
        var id = RemoteOptionSet.BatchId();
        var waiting = new WaitOptionSet();
        var remote = new RemoteOptionSet("Print the batch as JSON on stdout once it has ended, or the wait timed out (progress goes to stderr)");
        var command = new Command("wait", "Wait for a batch on a Shepherd server to end, with progress; exits 0 when every request succeeded, 3 when some failed, 4 on --timeout") { id };
        foreach (var option in waiting.All)
        {
            command.Add(option);
        }

        remote.AddTo(command);
        remote.SetAction(command, async (context, cancellationToken) =>
        {
            var batch = await context.Client.GetBatchAsync(context.Parse.GetValue(id)!, cancellationToken);
            return await new RemoteWait(context, waiting.Progress(context.Parse)).WaitAsync(batch, waiting.Timeout(context.Parse), cancellationToken);
        }, waiting.Tune);
        return command;
    }
}
