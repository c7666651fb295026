using System.Globalization;
using System.Text.RegularExpressions;
using Shepherd.Engine.Formats;
using Shepherd.Server.Http;

namespace Shepherd.Server.Batches;

/// <summary>
/// The problems found in the requests of a create or an estimate body, told as the caller sent
/// them: each as <c>requests[i]</c>, the request it came from, not the line the reader saw.
/// </summary>
internal static partial class RequestProblems
{
    /// <summary>A 400 naming each bad line as the request it came from, <c>requests[i]</c>, led by <paramref name="refusal"/>.</summary>
    public static ApiException Rejected(IReadOnlyList<InputError> errors, long? unlisted, string refusal = "The batch was not created")
    {
        static string Param(InputError error) => error.Line is { } line ? $"requests[{line - 1}]" : "requests";
        static string Index(Match line) => $"requests[{long.Parse(line.Groups[1].ValueSpan, CultureInfo.InvariantCulture) - 1}]";
        var problems = errors.Select(e => $"{Param(e)}: {LineReference().Replace(e.Message, Index)}").ToList();
        return ApiException.Rejected(problems, unlisted, Param(errors[0]), errors[0].Code, refusal);
    }

    /// <summary>
    /// The problems a door found in requests it could not pass on (<paramref name="refused"/>)
    /// with those the reader found in the rest, in request order. The reader's "no request" is
    /// left out when the door refused requests: they were there.
    /// </summary>
    public static List<InputError> Together(IReadOnlyList<InputError> refused, IReadOnlyList<InputError> found) =>
        [.. refused.Concat(found.Where(e => refused.Count == 0 || e.Code != InputErrorCodes.EmptyFile)).OrderBy(e => e.Line ?? 0)];

    [GeneratedRegex(@"\bline (\d+)")]
    private static partial Regex LineReference();
}
