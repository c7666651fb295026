using System.CommandLine;
using Shepherd.Cli.Commands;
using Shepherd.Engine.Formats;

namespace Shepherd.Cli.Running;

/// <summary>The problems that kept an input from being accepted: those listed, and how many more there were.</summary>
internal sealed record InputProblems(IReadOnlyList<InputError> Listed, long More)
{
    public long Total => Listed.Count + More;
}

/// <summary>
/// How a command says it cannot go on: a message on stderr and, with <c>--json</c>, a JSON
/// document on stdout that says the same, so a script reads one document whatever happened.
/// </summary>
internal static class Refusal
{
    /// <summary>True when the command <paramref name="parse"/> names has a <c>--json</c> switch and it is on.</summary>
    public static bool JsonWanted(ParseResult parse) =>
        parse.CommandResult.Command.Options.OfType<Option<bool>>().FirstOrDefault(o => o.Name == "--json") is { } json
        && parse.GetResult(json) is not null && parse.GetValue(json);

    /// <summary>Says <paramref name="message"/> and returns <paramref name="exitCode"/>; <paramref name="error"/> names what went wrong in the JSON document (by default the exit code's word).</summary>
    public static Task<int> ReportAsync(TextWriter stdout, TextWriter stderr, bool json, int exitCode, string message, string? error = null) =>
        ReportAsync(stdout, stderr, json, exitCode, message, name: null, problems: null, error);

    /// <summary>
    /// Says that the input <paramref name="name"/> was refused (<paramref name="headline"/>), lists
    /// its problems with their line numbers, says how many more there were, and returns exit code 2.
    /// </summary>
    public static Task<int> InputRefusedAsync(TextWriter stdout, TextWriter stderr, bool json, string name, string headline, InputProblems problems) =>
        ReportAsync(stdout, stderr, json, ExitCodes.InvalidInput, headline, name, problems, error: null);

    private static async Task<int> ReportAsync(TextWriter stdout, TextWriter stderr, bool json, int exitCode, string message, string? name, InputProblems? problems, string? error)
    {
        if (problems is null)
        {
            await stderr.WriteLineAsync(message);
        }
        else
        {
            await stderr.WriteLineAsync($"{message} {RemoteOutput.Plural(problems.Total, "problem")}:");
            foreach (var problem in problems.Listed)
            {
                await stderr.WriteLineAsync($"  {name}:{(problem.Line is null ? " " : "")}{problem}");
            }

            if (problems.More > 0)
            {
                await stderr.WriteLineAsync($"  {InputError.Unlisted(problems.More).Message}.");
            }
        }

        if (json)
        {
            await RemoteOutput.WriteJsonAsync(stdout, writer =>
            {
                writer.WriteStartObject();
                writer.WriteString("status", "error");
                writer.WriteString("error", error ?? ExitCodes.Word(exitCode));
                writer.WriteNumber("exit_code", exitCode);
                writer.WriteString("message", message);
                if (problems is not null)
                {
                    writer.WriteString("input", name);
                    writer.WriteStartArray("problems");
                    foreach (var problem in problems.Listed)
                    {
                        problem.WriteTo(writer);
                    }

                    writer.WriteEndArray();
                    writer.WriteNumber("more_problems", problems.More);
                }

                writer.WriteEndObject();
            });
        }

        return exitCode;
    }
}
